package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// topo: lan host --lan0-- appliance --wan0-- router (192.0.2.1).
type topo struct {
	lan, app, router *netns.NS
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	ctx := context.Background()
	ns := nstest.New(t, "netlan", "netapp", "netrtr")
	tp := topo{lan: ns[0], app: ns[1], router: ns[2]}
	if err := netns.Veth(ctx, tp.lan, "lan0", "198.18.1.2/24", tp.app, "lan0", "", 0); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, tp.app, "wan0", "", tp.router, "wan0", "192.0.2.1/24", 0); err != nil {
		t.Fatal(err)
	}
	return &tp
}

// count is how many of out's lines are line.
func count(out, line string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if l == line {
			n++
		}
	}
	return n
}

// eventually polls check until it returns "" or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problem := check()
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// has checks that `ip <args>` in ns prints every one of want.
func has(ns *netns.NS, args string, want ...string) func() string {
	return func() string {
		out, err := ns.Run(context.Background(), "ip", strings.Fields(args)...)
		if err != nil {
			return err.Error()
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return "ip " + args + ": no " + w + " in:\n" + out
			}
		}
		return ""
	}
}

func fileHas(path, want string) func() string {
	return func() string {
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), want) {
			return path + ": no " + want + " in:\n" + string(b)
		}
		return ""
	}
}

func writeConfig(t *testing.T, wan string) (cfgPath, resolv string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath, resolv = filepath.Join(dir, "pqbranch.json"), filepath.Join(dir, "resolv.conf")
	cfg := `{
  "hostname": "branch-t", "mtu": 1400,
  "wan": ` + wan + `,
  "lan": {"addresses": ["198.18.1.1/24"], "ula": true},
  "dns": {"search": ["branch.example"]},
  "routes": [{"to": "198.18.50.0/24", "via": "198.18.1.254"}],
  "firewall": {"internet_breakout": false, "lan": {"dhcp": false, "dns": false}},
  "tunnel": null, "time": {}, "update": {}
}`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, resolv
}

func TestDHCPWAN(t *testing.T) {
	tp := newTopo(t)
	cfgPath, resolv := writeConfig(t, `{"mode": "dhcp"}`)
	dhcpd := nstest.Start(t, tp.router, "dhcpd")
	time.Sleep(200 * time.Millisecond) // let the server bind
	nstest.Start(t, tp.app, "network", "PQB_CONFIG="+cfgPath, "PQB_RESOLV="+resolv)

	eventually(t, 15*time.Second, has(tp.app, "-4 addr show dev wan0", "inet 192.0.2.50/24"))
	eventually(t, 5*time.Second, has(tp.app, "-4 route", "default via 192.0.2.1 dev wan0"))
	eventually(t, 5*time.Second, fileHas(resolv, "nameserver 192.0.2.53\nsearch branch.example\n"))
	eventually(t, 5*time.Second, has(tp.app, "addr show dev lan0", "mtu 1400", "inet 198.18.1.1/24", "inet6 fd", "/64 scope global"))
	eventually(t, 5*time.Second, has(tp.app, "link show dev wan0", "mtu 1400"))
	eventually(t, 5*time.Second, has(tp.app, "-4 route", "198.18.50.0/24 via 198.18.1.254 dev lan0"))
	if out, err := tp.lan.Run(context.Background(), "ping", "-c1", "-W2", "198.18.1.1"); err != nil {
		t.Fatalf("LAN host cannot reach the appliance: %v\n%s", err, out)
	}

	// Renewal: T1 is two seconds, so REQUESTs keep coming without new
	// DISCOVERs, and the address keeps its lease lifetime.
	discovers := count(dhcpd.Stdout(), "DISCOVER")
	reqs := count(dhcpd.Stdout(), "REQUEST")
	eventually(t, 10*time.Second, func() string {
		if count(dhcpd.Stdout(), "REQUEST") < reqs+2 {
			return "lease not renewed"
		}
		return ""
	})
	if count(dhcpd.Stdout(), "DISCOVER") != discovers {
		t.Error("renewal started over with DISCOVER")
	}
	eventually(t, time.Second, has(tp.app, "-4 addr show dev wan0", "valid_lft 5", "inet 192.0.2.50/24"))

	// Cable pulled and plugged back (carrier lost on the appliance's WAN):
	// the appliance notices through netlink and acquires a lease afresh.
	ctx := context.Background()
	if _, err := tp.router.Run(ctx, "ip", "link", "set", "wan0", "down"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, has(tp.app, "link show dev wan0", "NO-CARRIER"))
	if _, err := tp.router.Run(ctx, "ip", "link", "set", "wan0", "up"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		if count(dhcpd.Stdout(), "DISCOVER") <= discovers {
			return "no new DISCOVER after link up"
		}
		return ""
	})
	eventually(t, 10*time.Second, has(tp.app, "-4 route", "default via 192.0.2.1 dev wan0"))
}

func TestStaticWAN(t *testing.T) {
	tp := newTopo(t)
	cfgPath, resolv := writeConfig(t, `{"mode": "static", "static": {"address": "192.0.2.10/24", "gateway": "192.0.2.1", "dns": ["192.0.2.53"]}}`)
	// An address from before (a previous config) must go.
	ctx := context.Background()
	if _, err := tp.app.Run(ctx, "ip", "addr", "add", "192.0.2.99/24", "dev", "wan0"); err != nil {
		t.Fatal(err)
	}
	nstest.Start(t, tp.app, "network", "PQB_CONFIG="+cfgPath, "PQB_RESOLV="+resolv)
	eventually(t, 10*time.Second, has(tp.app, "-4 addr show dev wan0", "inet 192.0.2.10/24"))
	eventually(t, 5*time.Second, has(tp.app, "-4 route", "default via 192.0.2.1 dev wan0"))
	eventually(t, 5*time.Second, fileHas(resolv, "nameserver 192.0.2.53\n"))
	if out, _ := tp.app.Run(ctx, "ip", "-4", "addr", "show", "dev", "wan0"); strings.Contains(out, "192.0.2.99") {
		t.Fatalf("stale address kept:\n%s", out)
	}
	if out, err := tp.app.Run(ctx, "ping", "-c1", "-W2", "192.0.2.1"); err != nil {
		t.Fatalf("cannot reach the gateway: %v\n%s", err, out)
	}
	// Taking the link down drops the default route; bringing it up must
	// restore it without a restart.
	if _, err := tp.app.Run(ctx, "ip", "link", "set", "wan0", "down"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() string {
		if has(tp.app, "-4 route", "default")() == "" {
			return "default route still there with the link down"
		}
		return ""
	})
	if _, err := tp.app.Run(ctx, "ip", "link", "set", "wan0", "up"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, has(tp.app, "-4 route", "default via 192.0.2.1 dev wan0"))
}
