package dnsfwd

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/pqbranch/pqbranch/services/config"
)

// fakeUpstream answers A queries with 192.0.2.x by server and records who
// was asked what, from where.
type fakeUpstream struct {
	mu    sync.Mutex
	asked []asked
	down  map[netip.Addr]bool
	ttl   uint32
	rcode int
}

type asked struct {
	name   string
	server netip.Addr
	local  netip.Addr
}

func (u *fakeUpstream) Exchange(ctx context.Context, m *dns.Msg, server netip.AddrPort, local netip.Addr) (*dns.Msg, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.asked = append(u.asked, asked{m.Question[0].Name, server.Addr(), local})
	if u.down[server.Addr()] {
		return nil, errors.New("timeout")
	}
	r := new(dns.Msg)
	r.SetReply(m)
	r.Rcode = u.rcode
	if u.rcode == dns.RcodeSuccess {
		a := server.Addr().As4()
		rr, _ := dns.NewRR(m.Question[0].Name + " 300 IN A 203.0.113." + itoa(int(a[3])))
		rr.Header().Ttl = u.ttl
		r.Answer = append(r.Answer, rr)
	}
	return r, nil
}

func itoa(i int) string { return netip.AddrFrom4([4]byte{0, 0, 0, byte(i)}).String()[6:] }

func (u *fakeUpstream) log() []asked {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]asked(nil), u.asked...)
}

var (
	public   = netip.MustParseAddr("192.0.2.53")
	public2  = netip.MustParseAddr("192.0.2.54")
	internal = netip.MustParseAddr("198.19.0.53")
	lanAddr  = netip.MustParseAddr("198.18.1.1")
)

func newTestForwarder(u *fakeUpstream, now *time.Time) *Forwarder {
	return New(Options{
		Upstreams:      func() []netip.Addr { return []netip.Addr{public, public2} },
		Internal:       []config.InternalDomain{{Domain: "corp.example", Servers: []netip.Addr{internal}}},
		InternalSource: lanAddr,
		Exchanger:      u,
		CacheSize:      4,
		Now:            func() time.Time { return *now },
	})
}

func query(name string, t uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	return m
}

func TestSplitDNS(t *testing.T) {
	now := time.Unix(1e9, 0)
	u := &fakeUpstream{ttl: 60, down: map[netip.Addr]bool{}}
	f := newTestForwarder(u, &now)
	ctx := context.Background()

	for _, tc := range []struct {
		name   string
		server netip.Addr
		local  netip.Addr
	}{
		{"www.example.", public, netip.Addr{}},
		{"Host.CORP.example.", internal, lanAddr},
		{"corp.example.", internal, lanAddr},
		{"notcorp.example.", public, netip.Addr{}},
	} {
		before := len(u.log())
		r := f.answer(ctx, query(tc.name, dns.TypeA))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s: %v", tc.name, r)
		}
		got := u.log()[before:]
		if len(got) != 1 || got[0].server != tc.server || got[0].local != tc.local {
			t.Errorf("%s asked %+v, want %v from %v", tc.name, got, tc.server, tc.local)
		}
	}

	// Internal resolvers down: SERVFAIL, and the name never reaches the
	// public resolvers.
	u.down[internal] = true
	before := len(u.log())
	if r := f.answer(ctx, query("db.corp.example.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("internal resolver down: rcode %s", dns.RcodeToString[r.Rcode])
	}
	for _, a := range u.log()[before:] {
		if a.server != internal {
			t.Errorf("internal name asked of %v", a.server)
		}
	}
	// A public resolver down: the next one answers.
	u.down[public] = true
	if r := f.answer(ctx, query("b.example.", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("failover: %v", r)
	}
}

func TestCache(t *testing.T) {
	now := time.Unix(1e9, 0)
	u := &fakeUpstream{ttl: 60, down: map[netip.Addr]bool{}}
	f := newTestForwarder(u, &now)
	ctx := context.Background()
	q := query("www.example.", dns.TypeA)
	q.Id = 7
	f.answer(ctx, q)
	now = now.Add(20 * time.Second)
	q.Id = 8
	r := f.answer(ctx, q)
	if n := len(u.log()); n != 1 {
		t.Fatalf("asked upstream %d times, want a cache hit", n)
	}
	if r.Id != 8 || r.Answer[0].Header().Ttl != 40 {
		t.Errorf("cached answer id %d ttl %d, want 8 and 40", r.Id, r.Answer[0].Header().Ttl)
	}
	if f.Stats().CacheHits != 1 {
		t.Errorf("stats %+v", f.Stats())
	}
	now = now.Add(41 * time.Second)
	f.answer(ctx, q)
	if n := len(u.log()); n != 2 {
		t.Fatalf("expired answer served from the cache")
	}
	// Bounded: many names, at most CacheSize entries.
	for i := range 50 {
		f.answer(ctx, query(itoa(i)+".example.", dns.TypeA))
	}
	if n := f.cache.len(); n != 4 {
		t.Errorf("cache holds %d entries, want 4", n)
	}
	// SERVFAIL is not cached.
	u.rcode = dns.RcodeServerFailure
	f.answer(ctx, query("fail.example.", dns.TypeA))
	u.rcode = dns.RcodeSuccess
	if r := f.answer(ctx, query("fail.example.", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("failure cached: %v", r)
	}
}

func TestMalformedQueries(t *testing.T) {
	now := time.Unix(1e9, 0)
	u := &fakeUpstream{ttl: 60}
	f := newTestForwarder(u, &now)
	two := query("a.example.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	resp := query("a.example.", dns.TypeA)
	resp.Response = true
	notify := query("a.example.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	chaos := query("a.example.", dns.TypeA)
	chaos.Question[0].Qclass = dns.ClassANY
	for name, tc := range map[string]struct {
		m     *dns.Msg
		rcode int
	}{
		"no question":   {new(dns.Msg), dns.RcodeFormatError},
		"two questions": {two, dns.RcodeFormatError},
		"response":      {resp, dns.RcodeFormatError},
		"notify":        {notify, dns.RcodeNotImplemented},
		"class ANY":     {chaos, dns.RcodeRefused},
	} {
		if r := f.answer(context.Background(), tc.m); r.Rcode != tc.rcode {
			t.Errorf("%s: rcode %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
	if len(u.log()) != 0 {
		t.Errorf("malformed queries forwarded: %+v", u.log())
	}
}

// replayUpstream answers with whatever bytes the fuzzer gave, under the
// query's id so that they are considered.
type replayUpstream struct{ b []byte }

func (u replayUpstream) Exchange(ctx context.Context, m *dns.Msg, server netip.AddrPort, local netip.Addr) (*dns.Msg, error) {
	r := new(dns.Msg)
	if err := r.Unpack(u.b); err != nil {
		return nil, err
	}
	r.Id = m.Id
	return r, nil
}

func FuzzAnswer(f *testing.F) {
	q, _ := query("www.example.", dns.TypeA).Pack()
	qi, _ := query("x.corp.example.", dns.TypeAAAA).SetEdns0(4096, true).Pack()
	ans := query("www.example.", dns.TypeA)
	ans.Response = true
	rr, _ := dns.NewRR("www.example. 60 IN A 192.0.2.1")
	ans.Answer = append(ans.Answer, rr)
	ab, _ := ans.Pack()
	f.Add(q, ab)
	f.Add(qi, ab)
	f.Add([]byte{0, 1, 0, 0, 0, 1}, []byte{})
	f.Fuzz(func(t *testing.T, qb, ub []byte) {
		req := new(dns.Msg)
		if req.Unpack(qb) != nil {
			return
		}
		fw := New(Options{
			Upstreams: func() []netip.Addr { return []netip.Addr{public} },
			Internal:  []config.InternalDomain{{Domain: "corp.example", Servers: []netip.Addr{internal}}},
			Exchanger: replayUpstream{ub}, CacheSize: 2,
		})
		for range 3 {
			r := fw.answer(context.Background(), req)
			if r.Id != req.Id {
				t.Fatalf("reply id %d for query %d", r.Id, req.Id)
			}
			r.Truncate(udpSize(req))
			if _, err := r.Pack(); err != nil {
				t.Fatalf("reply does not pack: %v", err)
			}
		}
		if fw.cache.len() > 2 {
			t.Fatalf("cache holds %d", fw.cache.len())
		}
	})
}
