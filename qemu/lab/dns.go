package lab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Resolver is a DNS server in one of the lab's namespaces that knows a few
// A records and remembers every name it was asked: the stand-in for an
// ISP's resolver on the WAN and for a data centre's internal one, so that
// a test can tell which of them answered a query the appliance forwarded.
type Resolver struct {
	srv     *dns.Server
	records map[string]netip.Addr // fully qualified, lower case

	mu    sync.Mutex
	asked map[string]int
}

// ServeDNS starts a resolver on addr (UDP, "ip:port") inside ns. It answers
// the names of records (with or without the final dot) with their
// addresses and every other name with NXDOMAIN. The caller closes it.
func ServeDNS(ns *netns.NS, addr string, records map[string]netip.Addr) (*Resolver, error) {
	r := &Resolver{records: map[string]netip.Addr{}, asked: map[string]int{}}
	for name, a := range records {
		r.records[dns.CanonicalName(name)] = a
	}
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab: resolver on %s in %s: %w", addr, ns.Name, err)
	}
	started := make(chan struct{})
	r.srv = &dns.Server{PacketConn: pc, Handler: r, NotifyStartedFunc: func() { close(started) }}
	failed := make(chan error, 1)
	go func() { failed <- r.srv.ActivateAndServe() }()
	select {
	case <-started:
		return r, nil
	case err := <-failed:
		pc.Close()
		return nil, fmt.Errorf("lab: resolver on %s: %w", addr, err)
	}
}

// ServeDNS answers one query.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		name := dns.CanonicalName(q.Question[0].Name)
		r.mu.Lock()
		r.asked[name]++
		r.mu.Unlock()
		a, ok := r.records[name]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   a.AsSlice(),
			})
		}
	} else {
		m.Rcode = dns.RcodeFormatError
	}
	w.WriteMsg(m)
}

// Asked returns how often name was asked, whatever the type.
func (r *Resolver) Asked(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[dns.CanonicalName(name)]
}

// AskedNames lists every name asked so far, for failure messages.
func (r *Resolver) AskedNames() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for n, c := range r.asked {
		names = append(names, fmt.Sprintf("%s×%d", n, c))
	}
	slices.Sort(names) // the same failure reads the same from run to run
	return strings.Join(names, " ")
}

// Close stops the resolver and closes its socket.
func (r *Resolver) Close() error {
	return r.srv.Shutdown()
}
