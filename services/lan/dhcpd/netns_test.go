package dhcpd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// The namespace test runs the server as a child of the test binary inside
// the appliance namespace, so every thread of it is there, and talks to it
// with a real DHCP client (nclient4, raw sockets) from the LAN host's.
func TestMain(m *testing.M) {
	nstest.Main(m, map[string]func(context.Context) error{"server": childServer})
}

func childServer(ctx context.Context) error {
	set := settings("198.18.1.100", "198.18.1.199")
	s := New(Options{Interface: "lan0", Settings: set, DNS: []netip.Addr{set.Server}, LeaseFile: os.Getenv("PQB_LEASES"),
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	return s.Run(ctx)
}

func startServer(t *testing.T, ns *netns.NS, leases string) *nstest.Child {
	t.Helper()
	return nstest.Start(t, ns, "server", "PQB_LEASES="+leases)
}

// requestLease runs a whole DHCP exchange from ns's interface, as hw when
// given (else the interface's MAC address).
func requestLease(ns *netns.NS, iface string, timeout time.Duration, hw ...net.HardwareAddr) (*nclient4.Lease, error) {
	var l *nclient4.Lease
	err := ns.Do(func() error {
		opts := []nclient4.ClientOpt{nclient4.WithTimeout(timeout), nclient4.WithRetry(2)}
		if len(hw) > 0 {
			opts = append(opts, nclient4.WithHWAddr(hw[0]))
		}
		c, err := nclient4.New(iface, opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
		defer cancel()
		l, err = c.Request(ctx)
		return err
	})
	return l, err
}

func TestServeLAN(t *testing.T) {
	ctx := context.Background()
	ns := nstest.New(t, "dhcplan", "dhcpapp", "dhcpwan")
	lan, app, wan := ns[0], ns[1], ns[2]
	if err := netns.Veth(ctx, lan, "lan0", "", app, "lan0", "198.18.1.1/24", 0); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, app, "wan0", "192.0.2.2/24", wan, "wan0", "", 0); err != nil {
		t.Fatal(err)
	}
	leases := filepath.Join(t.TempDir(), "leases.json")
	server := startServer(t, app, leases)

	var l *nclient4.Lease
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		if l, err = requestLease(lan, "lan0", time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease on the LAN: %v", err)
		}
	}
	ack := l.ACK
	got := ack.YourIPAddr.String()
	if !strings.HasPrefix(got, "198.18.1.1") || got == "198.18.1.1" {
		t.Fatalf("leased %s, outside the pool", got)
	}
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(net.IPv4(198, 18, 1, 1)) {
		t.Errorf("router %v", r)
	}
	if d := ack.DNS(); len(d) != 1 || !d[0].Equal(net.IPv4(198, 18, 1, 1)) {
		t.Errorf("dns %v", d)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.IPAddressLeaseTime(0) != time.Hour {
		t.Errorf("ack %s", ack.Summary())
	}

	// The WAN side gets nothing, though the server's namespace has it.
	if wl, err := requestLease(wan, "wan0", 500*time.Millisecond); err == nil {
		t.Fatalf("the server answered on the WAN: %s", wl.ACK.YourIPAddr)
	}

	// Restart (as a reboot or an update would): the lease file brings the
	// same address back for a fresh DISCOVER.
	server.Stop()
	b, err := os.ReadFile(leases)
	if err != nil || !strings.Contains(string(b), `"address": "`+got+`"`) {
		t.Fatalf("lease file after stop: %v\n%s", err, b)
	}
	startServer(t, app, leases)
	// Another host asks first: it must not get the stored lease's address
	// (on an empty table it would, being the first in the pool).
	deadline = time.Now().Add(15 * time.Second)
	for {
		if l, err = requestLease(lan, "lan0", time.Second, mac(42)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease for another host after the restart: %v", err)
		}
	}
	if other := l.ACK.YourIPAddr.String(); other == got {
		t.Fatalf("after the restart another host got %s, the stored lease's address", got)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		if l, err = requestLease(lan, "lan0", time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease after the restart: %v", err)
		}
	}
	if again := l.ACK.YourIPAddr.String(); again != got {
		t.Errorf("after the restart the client got %s, had %s", again, got)
	}
}
