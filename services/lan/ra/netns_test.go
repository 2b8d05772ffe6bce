package ra

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.LockMainThread()
	os.Exit(m.Run())
}

// A LAN host with the kernel's default IPv6 settings (accept_ra, autoconf)
// configures an address in the appliance's ULA /64 from its adverts, and
// learns the appliance as resolver.
func TestSLAAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := nstest.New(t, "ralan", "raapp")
	lan, app := ns[0], ns[1]
	if err := netns.Veth(ctx, lan, "lan0", "", app, "lan0", "", 0); err != nil {
		t.Fatal(err)
	}
	const ula = "fd12:3456:789a::1/64"
	if out, err := app.Run(ctx, "ip", "addr", "add", ula, "dev", "lan0"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, n := range []*netns.NS{lan, app} {
		if out, err := n.Run(ctx, "ip", "link", "set", "lan0", "up"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	done := make(chan error, 1)
	go app.Do(func() error {
		done <- Run(ctx, Options{Interface: "lan0", MTU: 1400, RDNSS: []netip.Addr{netip.MustParseAddr("fd12:3456:789a::1")}})
		return nil
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := lan.Run(ctx, "ip", "-6", "addr", "show", "dev", "lan0", "scope", "global")
		if strings.Contains(out, "inet6 fd12:3456:789a:0:") && strings.Contains(out, "/64") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("advertiser stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SLAAC address on the LAN host:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The advertised MTU is applied; the appliance is no default router.
	out, _ := lan.Run(ctx, "ip", "-6", "route", "show")
	if strings.Contains(out, "default") {
		t.Errorf("LAN host took the appliance as IPv6 default router:\n%s", out)
	}
	if b, _ := lan.Run(ctx, "cat", "/proc/sys/net/ipv6/conf/lan0/mtu"); strings.TrimSpace(b) != "1400" {
		t.Errorf("LAN host's IPv6 MTU %q, want the advertised 1400", strings.TrimSpace(b))
	}
}
