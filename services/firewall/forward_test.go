package firewall

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func settle() { time.Sleep(300 * time.Millisecond) }

// TestTunnelDownFailsClosed: with no IPsec SA (the tunnel is down), LAN
// traffic to the remote subnet must not leave on the WAN in clear, even
// though the appliance has a route there and internet breakout is on.
func TestTunnelDownFailsClosed(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	if _, err := tp.app.Run(ctx, "ip", "route", "add", remote.String(), "via", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	wire := sniff(t, tp.wan, "wan0")
	toRemote := toPrefix(remote)

	// Control: without the firewall the packets do leave in clear.
	sendUDP(t, tp.lan, "", "198.19.0.5:9", 5)
	settle()
	if n := wire.count(toRemote); n < 5 {
		t.Fatalf("control: sniffer saw %d packets to %v without firewall, want >= 5", n, remote)
	}

	for _, breakout := range []bool{false, true} {
		apply(t, tp.app, spec(8080, breakout))
		before := wire.count(toRemote)
		sendUDP(t, tp.lan, "", "198.19.0.5:9", 20)
		sendUDP(t, tp.lan, "", "198.19.0.200:443", 20)
		settle()
		if n := wire.count(toRemote) - before; n != 0 {
			t.Fatalf("breakout=%v: %d packets to the remote subnet left on WAN in clear", breakout, n)
		}
	}
}

// TestInboundClearFromRemoteDropped: packets claiming to come from the remote
// subnet must have been decrypted; in clear they are dropped.
func TestInboundClearFromRemoteDropped(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	if _, err := tp.wan.Run(ctx, "ip", "addr", "add", "198.19.0.1/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	got := udpSources(t, tp.lan, "198.18.1.2:7")
	sendUDP(t, tp.wan, "198.19.0.1", "198.18.1.2:7", 3)
	settle()
	if len(got()) != 3 {
		t.Fatalf("control: LAN host got %d datagrams without firewall, want 3", len(got()))
	}
	apply(t, tp.app, spec(8080, true))
	sendUDP(t, tp.wan, "198.19.0.1", "198.18.1.2:7", 3)
	settle()
	if n := len(got()); n != 3 {
		t.Fatalf("clear packets from the remote subnet reached the LAN: %d", n-3)
	}
}

// TestBreakout: LAN hosts reach the internet masqueraded only when the
// config asks for it; unsolicited traffic from the WAN never reaches the LAN.
func TestBreakout(t *testing.T) {
	tp := newTopo(t)
	got := udpSources(t, tp.wan, "203.0.113.1:7")

	apply(t, tp.app, spec(8080, false))
	sendUDP(t, tp.lan, "", "203.0.113.1:7", 3)
	settle()
	if n := len(got()); n != 0 {
		t.Fatalf("breakout off: %d datagrams reached the internet", n)
	}

	apply(t, tp.app, spec(8080, true))
	sendUDP(t, tp.lan, "", "203.0.113.1:7", 3)
	settle()
	want := []netip.Addr{netip.MustParseAddr("192.0.2.2")}
	if srcs := slices.Compact(got()); !slices.Equal(srcs, want) {
		t.Fatalf("breakout on: sources %v, want %v (masqueraded)", srcs, want)
	}

	lanGot := udpSources(t, tp.lan, "198.18.1.2:7")
	sendUDP(t, tp.wan, "", "198.18.1.2:7", 3)
	settle()
	if n := len(lanGot()); n != 0 {
		t.Fatalf("unsolicited WAN traffic reached the LAN: %d", n)
	}
}
