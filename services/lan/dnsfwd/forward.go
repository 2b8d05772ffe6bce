// Package dnsfwd is the appliance's DNS forwarder for the LAN: it answers
// from a small bounded cache or forwards to the configured or learnt
// resolvers. Split DNS: names under the configured internal domains are
// asked only of their resolvers behind the tunnel, from a LAN address so
// the IPsec policy carries the query, and never of the public resolvers,
// not even when the internal ones fail.
package dnsfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/internal/freebind"
)

// Exchanger sends one query to server, from local when it is valid. The
// network one is used on the appliance; tests substitute their own.
type Exchanger interface {
	Exchange(ctx context.Context, m *dns.Msg, server netip.AddrPort, local netip.Addr) (*dns.Msg, error)
}

// Options configure a forwarder.
type Options struct {
	// Listen are the LAN addresses to serve on, UDP and TCP.
	Listen []netip.AddrPort
	// Upstreams returns the resolvers for ordinary names, at query time:
	// those configured, else those learnt from the WAN.
	Upstreams func() []netip.Addr
	// Internal are the split-DNS domains; InternalSource is the LAN
	// address internal queries leave from.
	Internal       []config.InternalDomain
	InternalSource netip.Addr
	UpstreamPort   uint16 // default 53
	CacheSize      int    // default 1024 answers
	Timeout        time.Duration
	// MaxInFlight bounds concurrent queries; more are dropped, so a LAN
	// host flooding the forwarder cannot make it hold unbounded memory.
	MaxInFlight int
	Exchanger   Exchanger
	Log         *slog.Logger
	Now         func() time.Time
}

// Stats are the forwarder's counters for metrics.
type Stats struct {
	Queries, CacheHits, Internal, Failures, Dropped uint64
}

// Forwarder answers DNS queries from the LAN.
type Forwarder struct {
	opts     Options
	internal []internalRoute
	slots    chan struct{}

	mu    sync.Mutex
	cache *cache

	queries, hits, internalQ, failures, dropped atomic.Uint64
}

type internalRoute struct {
	suffix  string // lower case, with a leading and a trailing dot: ".corp.example."
	servers []netip.Addr
}

// New returns a forwarder; Serve starts it.
func New(opts Options) *Forwarder {
	if opts.UpstreamPort == 0 {
		opts.UpstreamPort = 53
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 1024
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = 64
	}
	if opts.Exchanger == nil {
		opts.Exchanger = netExchanger{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Upstreams == nil {
		opts.Upstreams = func() []netip.Addr { return nil }
	}
	f := &Forwarder{opts: opts, cache: newCache(opts.CacheSize), slots: make(chan struct{}, opts.MaxInFlight)}
	for _, d := range opts.Internal {
		f.internal = append(f.internal, internalRoute{suffix: "." + strings.ToLower(dns.Fqdn(d.Domain)), servers: d.Servers})
	}
	return f
}

// Stats returns the counters now.
func (f *Forwarder) Stats() Stats {
	return Stats{Queries: f.queries.Load(), CacheHits: f.hits.Load(), Internal: f.internalQ.Load(), Failures: f.failures.Load(), Dropped: f.dropped.Load()}
}

// ServeDNS implements dns.Handler.
func (f *Forwarder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	default:
		f.dropped.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*f.opts.Timeout)
	defer cancel()
	resp := f.answer(ctx, req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		resp.Truncate(udpSize(req))
	}
	_ = w.WriteMsg(resp) // a client gone away is not our error
}

// udpSize is the largest answer the client takes over UDP: 512 bytes, or
// what its EDNS0 record says up to 1232 (the DNS flag day's safe size).
func udpSize(req *dns.Msg) int {
	if o := req.IsEdns0(); o != nil {
		return int(min(max(o.UDPSize(), dns.MinMsgSize), 1232))
	}
	return dns.MinMsgSize
}

// answer builds the reply to one query. It is the fuzzed entry point.
func (f *Forwarder) answer(ctx context.Context, req *dns.Msg) *dns.Msg {
	f.queries.Add(1)
	out := new(dns.Msg)
	if req.Response || req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		out.SetRcodeFormatError(req)
		if req.Opcode != dns.OpcodeQuery {
			out.Rcode = dns.RcodeNotImplemented
		}
		out.Question = nil
		return out
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassCHAOS {
		out.SetRcode(req, dns.RcodeRefused)
		return out
	}
	name := strings.ToLower(q.Name)
	do := false
	if o := req.IsEdns0(); o != nil {
		do = o.Do()
	}
	key := cacheKey{name: name, qtype: q.Qtype, class: q.Qclass, do: do}
	now := f.opts.Now()
	f.mu.Lock()
	cached := f.cache.get(key, now)
	f.mu.Unlock()
	if cached != nil {
		f.hits.Add(1)
		return f.reply(req, cached)
	}

	servers, local := f.route(name)
	if local.IsValid() {
		f.internalQ.Add(1)
	}
	up, err := f.forward(ctx, req, q, do, servers, local)
	if err != nil {
		f.failures.Add(1)
		f.opts.Log.Debug("dns: no answer", "name", name, "err", err)
		out.SetRcode(req, dns.RcodeServerFailure)
		out.RecursionAvailable = true
		return out
	}
	f.mu.Lock()
	f.cache.put(key, up, now)
	f.mu.Unlock()
	return f.reply(req, up)
}

// route picks the resolvers for name: the longest matching internal
// domain's (with the source address that puts the query into the tunnel),
// else the ordinary ones.
func (f *Forwarder) route(name string) ([]netip.Addr, netip.Addr) {
	best := -1
	for i, r := range f.internal {
		if strings.HasSuffix("."+name, r.suffix) && (best < 0 || len(r.suffix) > len(f.internal[best].suffix)) {
			best = i
		}
	}
	if best >= 0 {
		return f.internal[best].servers, f.opts.InternalSource
	}
	return f.opts.Upstreams(), netip.Addr{}
}

var errNoServers = errors.New("no resolvers known")

// forward asks servers in turn until one gives a usable answer.
func (f *Forwarder) forward(ctx context.Context, req *dns.Msg, q dns.Question, do bool, servers []netip.Addr, local netip.Addr) (*dns.Msg, error) {
	if len(servers) == 0 {
		return nil, errNoServers
	}
	m := new(dns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	m.Question[0].Qclass = q.Qclass
	m.RecursionDesired = true
	m.CheckingDisabled = req.CheckingDisabled
	m.SetEdns0(1232, do)
	var errs []error
	for _, s := range servers {
		sctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
		resp, err := f.opts.Exchanger.Exchange(sctx, m, netip.AddrPortFrom(s, f.opts.UpstreamPort), local)
		cancel()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%v: %w", s, err))
		case resp.Id != m.Id || !resp.Response || len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Name) || resp.Question[0].Qtype != q.Qtype:
			errs = append(errs, fmt.Errorf("%v: answer does not match the question", s))
		case resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError:
			errs = append(errs, fmt.Errorf("%v: %s", s, dns.RcodeToString[resp.Rcode]))
		default:
			return resp, nil
		}
	}
	return nil, errors.Join(errs...)
}

// reply turns an upstream answer into the reply to req: req's id and
// flags, the upstream's records, and EDNS0 only if the client used it.
func (f *Forwarder) reply(req, up *dns.Msg) *dns.Msg {
	out := new(dns.Msg)
	out.SetReply(req)
	out.Rcode = up.Rcode
	out.RecursionAvailable = true
	out.AuthenticatedData = up.AuthenticatedData
	out.Answer = up.Answer
	out.Ns = up.Ns
	for _, rr := range up.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			out.Extra = append(out.Extra, rr)
		}
	}
	if o := req.IsEdns0(); o != nil {
		out.SetEdns0(1232, o.Do())
	}
	return out
}

// netExchanger asks over UDP, then TCP when the answer was truncated.
type netExchanger struct{}

func (netExchanger) Exchange(ctx context.Context, m *dns.Msg, server netip.AddrPort, local netip.Addr) (*dns.Msg, error) {
	resp, err := exchange(ctx, "udp", m, server, local)
	if err == nil && resp.Truncated {
		return exchange(ctx, "tcp", m, server, local)
	}
	return resp, err
}

func exchange(ctx context.Context, network string, m *dns.Msg, server netip.AddrPort, local netip.Addr) (*dns.Msg, error) {
	d := &net.Dialer{}
	if local.IsValid() {
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: local.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
	}
	c := &dns.Client{Net: network, Dialer: d, UDPSize: 1232}
	resp, _, err := c.ExchangeContext(ctx, m, server.String())
	return resp, err
}

// Serve answers on opts.Listen until ctx ends. The sockets are bound with
// IP_FREEBIND: at boot the LAN address may not be assigned yet, and a
// bind that fails then would only make the service restart.
func (f *Forwarder) Serve(ctx context.Context) error {
	lc := freebind.ListenConfig()
	var servers []*dns.Server
	fail := func(err error) error {
		for _, s := range servers {
			s.Shutdown()
		}
		return err
	}
	for _, a := range f.opts.Listen {
		pc, err := lc.ListenPacket(ctx, "udp", a.String())
		if err != nil {
			return fail(fmt.Errorf("dns: listen udp %v: %w", a, err))
		}
		ln, err := lc.Listen(ctx, "tcp", a.String())
		if err != nil {
			pc.Close()
			return fail(fmt.Errorf("dns: listen tcp %v: %w", a, err))
		}
		servers = append(servers,
			&dns.Server{PacketConn: pc, Handler: f, UDPSize: 1232},
			&dns.Server{Listener: ln, Handler: f, MaxTCPQueries: 16, ReadTimeout: 2 * time.Second, IdleTimeout: func() time.Duration { return 5 * time.Second }})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	f.opts.Log.Info("dns forwarder", "listen", f.opts.Listen, "internal", len(f.internal))
	select {
	case <-ctx.Done():
		for _, s := range servers {
			s.Shutdown()
		}
		return nil
	case err := <-errc:
		fail(nil)
		return fmt.Errorf("dns: %w", err)
	}
}
