package dhcpd

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/pqbranch/pqbranch/services/config"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func settings(start, end string) config.DHCPSettings {
	return config.DHCPSettings{
		Server: netip.MustParseAddr("198.18.1.1"), Subnet: netip.MustParsePrefix("198.18.1.0/24"),
		Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end), LeaseTime: time.Hour,
		Reservations: []config.DHCPReservation{{MAC: mustMAC("52:54:00:00:00:99"), Address: netip.MustParseAddr("198.18.1.20")}},
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func newTestServer(s config.DHCPSettings, file string) *Server {
	return New(Options{Interface: "lan0", Settings: s, DNS: []netip.Addr{s.Server}, Domain: "branch.example", LeaseFile: file})
}

func mac(i int) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)} }

func discover(hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		panic(err)
	}
	return m
}

// exchange runs DISCOVER/OFFER/REQUEST/ACK for hw and returns the ACK.
func exchange(t *testing.T, s *Server, hw net.HardwareAddr, now time.Time, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer, _ := s.handle(discover(hw, mods...), now)
	if offer == nil || offer.msg.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("%v: no offer", hw)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer.msg)
	if err != nil {
		t.Fatal(err)
	}
	ack, out := s.handle(req, now)
	if ack == nil || ack.msg.MessageType() != dhcpv4.MessageTypeAck || out != leasesChanged {
		t.Fatalf("%v: no ack for %v: %+v", hw, offer.msg.YourIPAddr, ack)
	}
	return ack.msg
}

func TestLeaseOptions(t *testing.T) {
	s := newTestServer(settings("198.18.1.100", "198.18.1.199"), "")
	ack := exchange(t, s, mac(1), t0)
	if got := ack.YourIPAddr.String(); got != "198.18.1.100" {
		t.Errorf("address %s", got)
	}
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(net.IPv4(198, 18, 1, 1)) {
		t.Errorf("router %v", r)
	}
	if d := ack.DNS(); len(d) != 1 || !d[0].Equal(net.IPv4(198, 18, 1, 1)) {
		t.Errorf("dns %v", d)
	}
	if ack.SubnetMask().String() != "ffffff00" || ack.IPAddressLeaseTime(0) != time.Hour || ack.IPAddressRenewalTime(0) != 30*time.Minute ||
		ack.DomainName() != "branch.example" || !ack.ServerIdentifier().Equal(net.IPv4(198, 18, 1, 1)) {
		t.Errorf("options %s", ack.Summary())
	}
	if n := s.table.activeBound(t0); n != 1 {
		t.Errorf("%d bound leases", n)
	}
}

func TestReservationAndStickiness(t *testing.T) {
	s := newTestServer(settings("198.18.1.100", "198.18.1.199"), "")
	if a := exchange(t, s, mustMAC("52:54:00:00:00:99"), t0).YourIPAddr.String(); a != "198.18.1.20" {
		t.Errorf("reserved host got %s", a)
	}
	first := exchange(t, s, mac(1), t0).YourIPAddr.String()
	// Expired and back a day later: same address.
	if again := exchange(t, s, mac(1), t0.Add(24*time.Hour)).YourIPAddr.String(); again != first {
		t.Errorf("came back to %s, had %s", again, first)
	}
	// A host asking for another's active address gets a NAK.
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(2)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(first))))
	req.OpCode = dhcpv4.OpcodeBootRequest
	if r, _ := s.handle(req, t0.Add(24*time.Hour)); r == nil || r.msg.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for a taken address: %+v", r)
	}
	// INIT-REBOOT for a free pool address (lease file lost): granted.
	req2, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(3)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 1, 150))))
	req2.OpCode = dhcpv4.OpcodeBootRequest
	if r, _ := s.handle(req2, t0); r == nil || r.msg.MessageType() != dhcpv4.MessageTypeAck || r.msg.YourIPAddr.String() != "198.18.1.150" {
		t.Errorf("init-reboot: %+v", r)
	}
	// Nobody else gets the reserved address, even when asking for it.
	if a := exchange(t, s, mac(4), t0, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 1, 20)))).YourIPAddr.String(); a == "198.18.1.20" {
		t.Error("reserved address handed to another host")
	}
}

// A flood of invented MAC addresses fills the pool and no more: the table
// stays bounded, and a real client gets an address once offers lapse.
func TestPoolBounded(t *testing.T) {
	s := newTestServer(settings("198.18.1.100", "198.18.1.109"), "")
	for i := range 1000 {
		s.handle(discover(mac(1000+i)), t0)
	}
	if n := len(s.table.byMAC); n != 10 {
		t.Fatalf("%d table entries for a pool of 10", n)
	}
	if r, _ := s.handle(discover(mac(5000)), t0); r != nil {
		t.Fatalf("offer from an exhausted pool: %v", r.msg.YourIPAddr)
	}
	exchange(t, s, mac(5000), t0.Add(offerHold+time.Second))
	if n := len(s.table.byMAC); n != 10 {
		t.Fatalf("%d table entries after reclaiming", n)
	}
}

func TestIgnored(t *testing.T) {
	s := newTestServer(settings("198.18.1.100", "198.18.1.199"), "")
	relayed := discover(mac(1), dhcpv4.WithRelay(net.IPv4(10, 0, 0, 1)))
	reply := discover(mac(1))
	reply.OpCode = dhcpv4.OpcodeBootReply
	other := discover(mac(1))
	offer, _ := s.handle(other, t0)
	req, _ := dhcpv4.NewRequestFromOffer(offer.msg)
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 1, 254)))
	for name, m := range map[string]*dhcpv4.DHCPv4{"relayed": relayed, "reply": reply, "other server": req} {
		if r, _ := s.handle(m, t0); r != nil {
			t.Errorf("%s answered: %s", name, r.msg.Summary())
		}
	}
	if s.table.byMAC[macKey(mac(1))] != nil {
		t.Error("offer kept after the client chose another server")
	}
}

func TestLeaseFileRoundTrip(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	set := settings("198.18.1.100", "198.18.1.199")
	s := newTestServer(set, file)
	want := map[string]string{}
	for i := range 5 {
		want[macKey(mac(i))] = exchange(t, s, mac(i), t0).YourIPAddr.String()
	}
	s.handle(discover(mac(77)), t0) // an offer is not stored
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	s2 := newTestServer(set, file)
	if len(s2.table.byMAC) != 5 {
		t.Fatalf("restored %d leases, want 5", len(s2.table.byMAC))
	}
	for i := range 5 {
		if got := exchange(t, s2, mac(i), t0.Add(time.Minute)).YourIPAddr.String(); got != want[macKey(mac(i))] {
			t.Errorf("client %d: %s after restart, had %s", i, got, want[macKey(mac(i))])
		}
	}
	// A narrowed pool drops the leases outside it, not the file.
	s3 := newTestServer(settings("198.18.1.102", "198.18.1.199"), file)
	if len(s3.table.byMAC) != 3 {
		t.Errorf("restored %d leases into the narrower pool, want 3", len(s3.table.byMAC))
	}
}

func TestDecodeLeasesRejects(t *testing.T) {
	for _, b := range []string{``, `[]`, `{"version": 2, "leases": []}`, `{"version": 1, "leases": {}}`, `{"version":1,"leases":[{"expires":"yesterday"}]}`} {
		if _, err := decodeLeases([]byte(b)); err == nil {
			t.Errorf("%q accepted", b)
		}
	}
}

func FuzzHandlePacket(f *testing.F) {
	for _, m := range []*dhcpv4.DHCPv4{
		discover(mac(1)),
		discover(mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 1, 150))), dhcpv4.WithOption(dhcpv4.OptHostName("laptop"))),
	} {
		f.Add(m.ToBytes())
		for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeInform} {
			m.UpdateOption(dhcpv4.OptMessageType(typ))
			m.ClientIPAddr = net.IPv4(198, 18, 1, 150)
			f.Add(m.ToBytes())
		}
	}
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := newTestServer(settings("198.18.1.100", "198.18.1.103"), "")
		for i := range 3 {
			r, _ := s.handlePacket(b, t0.Add(time.Duration(i)*time.Hour))
			if r != nil && r.msg != nil {
				if len(r.msg.ToBytes()) > maxPacket {
					t.Fatalf("reply of %d bytes", len(r.msg.ToBytes()))
				}
				if y := addrOf(r.msg.YourIPAddr); y.IsValid() && !s.set.Subnet.Contains(y) {
					t.Fatalf("handed out %v outside the subnet", y)
				}
			}
		}
		if n := len(s.table.byMAC); n > 5 { // pool of 4 and one reservation
			t.Fatalf("table holds %d entries", n)
		}
	})
}

func FuzzDecodeLeases(f *testing.F) {
	s := newTestServer(settings("198.18.1.100", "198.18.1.199"), "")
	for i := range 3 {
		s.table.bind(macKey(mac(i)), netip.AddrFrom4([4]byte{198, 18, 1, byte(100 + i)}), fmt.Sprint("h", i), t0)
	}
	f.Add(s.table.encodeLeases())
	f.Add([]byte(`{"version":1,"leases":[{"mac":"zz","address":"1.2.3.4"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		leases, err := decodeLeases(b)
		if err != nil {
			return
		}
		tb := newTable(settings("198.18.1.100", "198.18.1.109"))
		tb.restore(leases, t0)
		if len(tb.byMAC) > 11 || len(tb.byMAC) != len(tb.byAddr) {
			t.Fatalf("restored %d/%d entries", len(tb.byMAC), len(tb.byAddr))
		}
		for _, l := range tb.byMAC {
			if !tb.canHave(l.MAC, l.Addr, t0) {
				t.Fatalf("restored %v for %s, which the settings do not allow", l.Addr, l.MAC)
			}
		}
	})
}
