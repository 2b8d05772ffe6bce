package network

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func ack(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(192, 0, 2, 50)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(192, 0, 2, 1)),
		dhcpv4.WithDNS(net.IPv4(192, 0, 2, 53)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 1))),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)),
	}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseLease(t *testing.T) {
	good := lease{
		Addr:   netip.MustParsePrefix("192.0.2.50/24"),
		Router: netip.MustParseAddr("192.0.2.1"),
		DNS:    []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Server: netip.MustParseAddr("192.0.2.1"),
		Lease:  time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second,
	}
	l, err := parseLease(ack(t))
	if err != nil || l.Addr != good.Addr || l.Router != good.Router || len(l.DNS) != 1 || l.DNS[0] != good.DNS[0] ||
		l.Server != good.Server || l.Lease != good.Lease || l.T1 != good.T1 || l.T2 != good.T2 {
		t.Fatalf("got %+v, %v; want %+v", l, err, good)
	}
	cases := []struct {
		name  string
		mods  []dhcpv4.Modifier
		bad   bool
		check func(lease) bool
	}{
		{"nak", []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeNak)}, true, nil},
		{"zero address", []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4zero)}, true, nil},
		{"multicast address", []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4(224, 0, 0, 1))}, true, nil},
		{"broadcast of subnet", []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4(192, 0, 2, 255))}, true, nil},
		{"no mask", []dhcpv4.Modifier{func(m *dhcpv4.DHCPv4) { m.Options.Del(dhcpv4.OptionSubnetMask) }}, true, nil},
		{"mask /32", []dhcpv4.Modifier{dhcpv4.WithNetmask(net.CIDRMask(32, 32))}, true, nil},
		{"router off subnet ignored", []dhcpv4.Modifier{dhcpv4.WithRouter(net.IPv4(198, 51, 100, 1))}, false,
			func(l lease) bool { return !l.Router.IsValid() }},
		{"tiny lease clamped", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Second))}, false,
			func(l lease) bool { return l.Lease == minLease && l.T1 == minLease/2 }},
		{"bad T1 fixed", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(2 * time.Hour))}, false,
			func(l lease) bool { return l.T1 == 30*time.Minute && l.T2 > l.T1 && l.T2 < l.Lease }},
		{"short T1 kept", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(2 * time.Second))}, false,
			func(l lease) bool { return l.T1 == 2*time.Second }},
		{"dns filtered", []dhcpv4.Modifier{dhcpv4.WithDNS(net.IPv4zero, net.IPv4(224, 0, 0, 1), net.IPv4(192, 0, 2, 9))}, false,
			func(l lease) bool { return len(l.DNS) == 1 && l.DNS[0] == netip.MustParseAddr("192.0.2.9") }},
	}
	for _, tc := range cases {
		l, err := parseLease(ack(t, tc.mods...))
		if tc.bad != (err != nil) {
			t.Errorf("%s: err = %v", tc.name, err)
			continue
		}
		if tc.check != nil && !tc.check(l) {
			t.Errorf("%s: %+v", tc.name, l)
		}
	}
}

func FuzzParseLease(f *testing.F) {
	f.Add(ack(f).ToBytes())
	f.Add(ack(f, dhcpv4.WithNetmask(net.CIDRMask(8, 32))).ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := parseLease(m)
		if err != nil {
			return
		}
		// Whatever a server sends, an accepted lease is safe to install.
		switch {
		case !l.Addr.Addr().Is4() || l.Addr.Bits() < 8 || l.Addr.Bits() > 30:
			t.Fatalf("bad address %v", l.Addr)
		case l.Router.IsValid() && (!l.Addr.Contains(l.Router) || l.Router == l.Addr.Addr()):
			t.Fatalf("router %v off %v", l.Router, l.Addr)
		case len(l.DNS) > 3:
			t.Fatalf("%d dns servers", len(l.DNS))
		case !(0 < l.T1 && l.T1 < l.T2 && l.T2 < l.Lease && l.Lease >= minLease && l.Lease <= maxLease):
			t.Fatalf("bad times %v %v %v", l.T1, l.T2, l.Lease)
		}
	})
}

func TestULA(t *testing.T) {
	a := ULA([]byte{0x52, 0x54, 0, 0, 0, 1})
	b := ULA([]byte{0x52, 0x54, 0, 0, 0, 2})
	if a != ULA([]byte{0x52, 0x54, 0, 0, 0, 1}) {
		t.Fatal("not stable")
	}
	if a == b {
		t.Fatal("two devices share a ULA")
	}
	if !netip.MustParsePrefix("fd00::/8").Contains(a.Addr()) || a.Bits() != 48 {
		t.Fatalf("%v is not an RFC 4193 /48", a)
	}
	addr := ULAAddress(a, 0)
	if addr.Bits() != 64 || !a.Contains(addr.Addr()) || addr.Addr().As16()[15] != 1 {
		t.Fatalf("address %v", addr)
	}
}

func TestResolvConf(t *testing.T) {
	dns := func(s ...string) (out []netip.Addr) {
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	got := string(resolvConf(nil, dns("192.0.2.53", "192.0.2.54", "192.0.2.55", "192.0.2.56"), []string{"branch.example"}))
	want := "# written by pqbranch; edit the appliance config instead\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 192.0.2.55\nsearch branch.example\n"
	if got != want {
		t.Errorf("got %q", got)
	}
	if got := string(resolvConf(dns("198.18.0.53"), dns("192.0.2.53"), nil)); got != "# written by pqbranch; edit the appliance config instead\nnameserver 198.18.0.53\n" {
		t.Errorf("override: got %q", got)
	}
}
