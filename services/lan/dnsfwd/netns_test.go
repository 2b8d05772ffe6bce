package dnsfwd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.Main(m, map[string]func(context.Context) error{"forwarder": childForwarder})
}

// childForwarder is the appliance's forwarder as the appliance runs it.
func childForwarder(ctx context.Context) error {
	f := New(Options{
		Listen:         []netip.AddrPort{netip.MustParseAddrPort("198.18.1.1:53")},
		Upstreams:      func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.1")} },
		Internal:       []config.InternalDomain{{Domain: "corp.example", Servers: []netip.Addr{netip.MustParseAddr("198.19.0.53")}}},
		InternalSource: netip.MustParseAddr("198.18.1.1"),
		Log:            slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	return f.Serve(ctx)
}

// upstream is a resolver that answers every A query with addr and
// records which names it was asked, by whom.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen []string // "name from"
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Question[0].Name+" from "+w.RemoteAddr().(*net.UDPAddr).IP.String())
	u.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN A " + u.addr)
	m.Answer = append(m.Answer, rr)
	w.WriteMsg(m)
}

func (u *upstream) asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func serveUpstream(t *testing.T, ns *netns.NS, listen, answer string) *upstream {
	t.Helper()
	u := &upstream{addr: answer}
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", listen)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: u}
	go s.ActivateAndServe()
	t.Cleanup(func() { s.Shutdown() })
	return u
}

func ask(ns *netns.NS, name string) (*dns.Msg, error) {
	var r *dns.Msg
	err := ns.Do(func() (err error) {
		c := &dns.Client{Timeout: 3 * time.Second}
		r, _, err = c.Exchange(query(name, dns.TypeA), "198.18.1.1:53")
		return err
	})
	return r, err
}

func TestForwardInNamespaces(t *testing.T) {
	ctx := context.Background()
	ns := nstest.New(t, "dnslan", "dnsapp", "dnsup")
	lan, app, up := ns[0], ns[1], ns[2]
	if err := netns.Veth(ctx, lan, "lan0", "198.18.1.2/24", app, "lan0", "", 0); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, app, "wan0", "192.0.2.2/24", up, "wan0", "192.0.2.1/24", 0); err != nil {
		t.Fatal(err)
	}
	// The internal resolver stands in for the data centre's, reached
	// through the tunnel in real life: here only by a route.
	for _, c := range [][]string{
		{"addr", "add", "198.19.0.53/32", "dev", "lo"}, {"link", "set", "lo", "up"},
		{"route", "add", "198.18.1.0/24", "via", "192.0.2.2"},
	} {
		if out, err := up.Run(ctx, "ip", c...); err != nil {
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	if out, err := app.Run(ctx, "ip", "route", "add", "198.19.0.0/24", "via", "192.0.2.1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	public := serveUpstream(t, up, "192.0.2.1:53", "203.0.113.1")
	corp := serveUpstream(t, up, "198.19.0.53:53", "198.19.0.80")

	// The forwarder starts before its LAN address exists (the boot race).
	nstest.Start(t, app, "forwarder")
	time.Sleep(300 * time.Millisecond)
	if out, err := app.Run(ctx, "ip", "addr", "add", "198.18.1.1/24", "dev", "lan0"); err != nil {
		t.Fatalf("%v %s", err, out)
	}

	var r *dns.Msg
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if r, err = ask(lan, "www.example."); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from the forwarder: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "203.0.113.1" {
		t.Fatalf("public name: %v", r)
	}
	if r, err := ask(lan, "intranet.corp.example."); err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "198.19.0.80" {
		t.Fatalf("internal name: %v %v", r, err)
	}
	// Cached: asked again, the public resolver sees it once.
	if _, err := ask(lan, "www.example."); err != nil {
		t.Fatal(err)
	}
	if got := public.asked(); len(got) != 1 || got[0] != "www.example. from 192.0.2.2" {
		t.Errorf("public resolver was asked %v", got)
	}
	// The internal query left from the LAN address, which the tunnel's
	// policy (local_subnets) carries; the public resolver never saw it.
	if got := corp.asked(); len(got) != 1 || got[0] != "intranet.corp.example. from 198.18.1.1" {
		t.Errorf("internal resolver was asked %v", got)
	}
	for _, s := range public.asked() {
		if strings.Contains(s, "corp.example") {
			t.Errorf("internal name sent to the public resolver: %s", s)
		}
	}
}
