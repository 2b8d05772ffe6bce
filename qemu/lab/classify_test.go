package lab

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

var (
	applianceWAN = netip.MustParseAddr("192.0.2.111")
	edgeWAN      = netip.MustParseAddr("192.0.2.1")
	lanClient    = netip.MustParseAddr(ClientAddr)
	dcHost       = netip.MustParseAddr("198.19.0.2")
)

func ether(etherType uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	binary.BigEndian.PutUint16(f[12:], etherType)
	return append(f, payload...)
}

// ipv4 builds a header; frag is the flags/offset field.
func ipv4(src, dst netip.Addr, proto uint8, id, frag uint16, body []byte) []byte {
	h := make([]byte, 20, 20+len(body))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
	binary.BigEndian.PutUint16(h[4:], id)
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8], h[9] = 64, proto
	copy(h[12:], src.AsSlice())
	copy(h[16:], dst.AsSlice())
	return append(h, body...)
}

func udp(sport, dport uint16, data []byte) []byte {
	h := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(data)))
	return append(h, data...)
}

func tcp(sport, dport uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = 5 << 4
	return h
}

func icmpUnreachable(quoted []byte) []byte {
	return append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quoted...)
}

func TestClassifier(t *testing.T) {
	marker := []byte("pqb-e2e-CLEARTXT")
	esp := append([]byte{0x53, 0xe9, 0x29, 0x50, 0, 0, 0, 1}, make([]byte, 64)...)
	ike := append([]byte{0, 0, 0, 0}, make([]byte, 40)...)
	tcpWithMarker := append(make([]byte, 20), marker...)
	for _, tc := range []struct {
		name      string
		frame     []byte
		class     string
		leakMatch string // empty: no leak expected
	}{
		{"IKE on 500", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 1, 0, udp(500, 500, make([]byte, 40)))), ClassIKE, ""},
		{"IKE on 4500", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 2, 0, udp(4500, 4500, ike))), ClassIKE, ""},
		{"ESP in UDP", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 3, 0, udp(4500, 4500, esp))), ClassESPInUDP, ""},
		{"keepalive", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 4, 0, udp(4500, 4500, []byte{0xff}))), ClassKeepalive, ""},
		{"DHCP", ether(0x0800, ipv4(netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 17, 5, 0, udp(68, 67, make([]byte, 300)))), ClassDHCP, ""},
		{"ARP", ether(0x0806, make([]byte, 28)), ClassARP, ""},
		{"unreachable quoting ESP", ether(0x0800, ipv4(edgeWAN, applianceWAN, 1, 6, 0,
			icmpUnreachable(ipv4(applianceWAN, edgeWAN, 17, 3, 0, udp(4500, 4500, nil))))), ClassICMPError, ""},
		{"cleartext LAN ping", ether(0x0800, ipv4(lanClient, dcHost, 1, 7, 0, make([]byte, 64))), ClassOther, "LAN address"},
		{"masqueraded TCP with the marker", ether(0x0800, ipv4(applianceWAN, dcHost, 6, 8, 0, tcpWithMarker)), ClassOther, "LAN address"},
		{"HTTPS to the update server", ether(0x0800, ipv4(applianceWAN, edgeWAN, 6, 15, 0, tcp(40000, UpdatePort))), ClassUpdate, ""},
		{"HTTPS from the update server", ether(0x0800, ipv4(edgeWAN, applianceWAN, 6, 16, 0, tcp(UpdatePort, 40000))), ClassUpdate, ""},
		{"TCP to another port", ether(0x0800, ipv4(applianceWAN, edgeWAN, 6, 17, 0, tcp(40000, 443))), ClassOther, ""},
		{"WAN TCP with the marker", ether(0x0800, ipv4(applianceWAN, edgeWAN, 6, 9, 0, tcpWithMarker)), ClassOther, "payload marker"},
		{"marker inside UDP 500", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 10, 0, udp(500, 500, marker))), ClassIKE, "payload marker"},
		{"unreachable quoting LAN traffic", ether(0x0800, ipv4(edgeWAN, applianceWAN, 1, 11, 0,
			icmpUnreachable(ipv4(lanClient, dcHost, 17, 3, 0, udp(1234, 80, nil))))), ClassOther, "LAN address"},
		{"echo on the WAN", ether(0x0800, ipv4(applianceWAN, edgeWAN, 1, 12, 0, []byte{8, 0, 0, 0, 0, 0, 0, 0})), ClassOther, ""},
		{"UDP to another port", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 13, 0, udp(40000, 53, make([]byte, 30)))), ClassOther, ""},
		{"unknown non-first fragment", ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 14, 185, make([]byte, 100))), ClassOther, ""},
		{"IPv6 with a global address", ether(0x86dd, ipv6(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("ff02::1"), 58)), ClassOther, ""},
		{"IPv6 router solicitation", ether(0x86dd, ipv6(netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::2"), 58)), ClassIPv6ND, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewClassifier(marker).Classify(tc.frame)
			if v.Class != tc.class {
				t.Errorf("class %q, want %q", v.Class, tc.class)
			}
			switch {
			case tc.leakMatch == "" && v.Leak != "":
				t.Errorf("unexpected leak: %s", v.Leak)
			case tc.leakMatch != "" && !strings.Contains(v.Leak, tc.leakMatch):
				t.Errorf("leak %q, want one mentioning %q", v.Leak, tc.leakMatch)
			}
		})
	}
}

// A datagram fragmented on the WAN: the later fragments, which have no UDP
// header, count as the first fragment's class.
func TestClassifierFragments(t *testing.T) {
	c := NewClassifier([]byte("marker"))
	esp := append([]byte{1, 2, 3, 4}, make([]byte, 100)...)
	first := ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 77, 0x2000, udp(4500, 4500, esp)))
	last := ether(0x0800, ipv4(applianceWAN, edgeWAN, 17, 77, 14, make([]byte, 60)))
	if v := c.Classify(first); v.Class != ClassESPInUDP {
		t.Fatalf("first fragment: %q", v.Class)
	}
	if v := c.Classify(last); v.Class != ClassESPInUDP {
		t.Errorf("last fragment: %q, want %q", v.Class, ClassESPInUDP)
	}
	// The datagram is complete: a fragment reusing its ID is unknown.
	if v := c.Classify(last); v.Class != ClassOther {
		t.Errorf("fragment after the last: %q, want %q", v.Class, ClassOther)
	}
}

func ipv6(src, dst netip.Addr, next uint8) []byte {
	h := make([]byte, 40, 48)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], 8)
	h[6], h[7] = next, 255
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return append(h, 133, 0, 0, 0, 0, 0, 0, 0)
}
