package firewall

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// topo is a branch office in namespaces:
//
//	lan host 198.18.1.2 --lan0-- appliance 198.18.1.1 | 192.0.2.2 --wan0-- router 192.0.2.1
//
// The router also holds 203.0.113.1 (an "internet" host) and routes the
// remote subnet 198.19.0.0/24 back, so anything the appliance forwards to the
// remote subnet in clear reaches the router's wan0, where tests sniff.
type topo struct {
	lan, app, wan *netns.NS
}

var remote = netip.MustParsePrefix("198.19.0.0/24")

func newTopo(t *testing.T) *topo {
	t.Helper()
	ctx := context.Background()
	ns := nstest.New(t, "fwlan", "fwapp", "fwwan")
	tp := topo{lan: ns[0], app: ns[1], wan: ns[2]}
	must := func(_ string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := netns.Veth(ctx, tp.lan, "lan0", "198.18.1.2/24", tp.app, "lan0", "198.18.1.1/24", 0); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, tp.app, "wan0", "192.0.2.2/24", tp.wan, "wan0", "192.0.2.1/24", 0); err != nil {
		t.Fatal(err)
	}
	must(tp.lan.Run(ctx, "ip", "route", "add", "default", "via", "198.18.1.1"))
	must(tp.app.Run(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
	must(tp.app.Run(ctx, "ip", "route", "add", "default", "via", "192.0.2.1"))
	must(tp.wan.Run(ctx, "ip", "addr", "add", "203.0.113.1/32", "dev", "lo"))
	must(tp.wan.Run(ctx, "ip", "route", "add", "198.18.1.0/24", "via", "192.0.2.2"))
	return &tp
}

func spec(mgmt uint16, breakout bool) Spec {
	return Spec{WAN: "wan0", LAN: "lan0", ManagementPort: mgmt, InternetBreakout: breakout, RemoteSubnets: []netip.Prefix{remote}}
}

// nft returns a connection to the namespace's nftables.
func nft(t *testing.T, ns *netns.NS) *nftables.Conn {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func apply(t *testing.T, ns *netns.NS, s Spec) {
	t.Helper()
	if err := Apply(nft(t, ns), s); err != nil {
		t.Fatal(err)
	}
}
