package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Frame classes on the appliance's WAN. The tunnel may only ever put IKE
// and ESP-in-UDP there; the rest is the appliance's own link and control
// plane (address resolution, its DHCP lease, time, firmware updates over
// HTTPS) and the ICMP errors the edge answers those with.
const (
	ClassIKE       = "ike" // UDP 500, or 4500 with the non-ESP marker
	ClassKeepalive = "natt-keepalive"
	ClassESPInUDP  = "esp-in-udp" // UDP 4500 carrying ESP (RFC 3948)
	ClassARP       = "arp"
	ClassDHCP      = "dhcp"
	ClassNTP       = "ntp"
	ClassUpdate    = "update-https" // TCP to or from the update server's port
	ClassICMPError = "icmp-error"   // quoting one of the classes above
	ClassIPv6ND    = "ipv6-link-control"
	ClassOther     = "other" // anything else: a test failure
)

// lanRange holds every LAN and data-centre address of the tests
// (198.18.0.0/15): none may appear in a header on the WAN.
var lanRange = netip.MustParsePrefix("198.18.0.0/15")

// Verdict is what a Classifier found in one frame.
type Verdict struct {
	Class string
	// Leak, when not empty, says why the frame exposes LAN traffic in
	// clear: a LAN address in an IP header or the payload marker.
	Leak string
}

// Classifier sorts WAN frames. It remembers the class of first IPv4
// fragments so that later fragments, which carry no UDP header, are
// attributed to the datagram they belong to.
type Classifier struct {
	marker []byte
	frags  map[fragKey]string
}

type fragKey struct {
	src, dst netip.Addr
	id       uint16
	proto    uint8
}

// NewClassifier returns a classifier that reports any frame containing
// marker (which the test writes into every cleartext payload) as a leak.
func NewClassifier(marker []byte) *Classifier {
	return &Classifier{marker: bytes.Clone(marker), frags: map[fragKey]string{}}
}

// Classify looks at one Ethernet frame.
func (c *Classifier) Classify(frame []byte) Verdict {
	v := c.classify(frame)
	if v.Leak == "" && len(c.marker) > 0 && bytes.Contains(frame, c.marker) {
		v.Leak = fmt.Sprintf("payload marker %q in a %s frame", c.marker, v.Class)
	}
	return v
}

func (c *Classifier) classify(frame []byte) Verdict {
	if len(frame) < 14 {
		return Verdict{Class: ClassOther}
	}
	payload := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0806:
		return Verdict{Class: ClassARP}
	case 0x86dd:
		return Verdict{Class: classifyIPv6(payload)}
	case 0x0800:
		return c.classifyIPv4(payload, false)
	}
	return Verdict{Class: ClassOther}
}

// classifyIPv4 classifies an IPv4 packet; quoted is set for the packet an
// ICMP error carries, which may be cut short after the UDP header.
func (c *Classifier) classifyIPv4(p []byte, quoted bool) Verdict {
	if len(p) < 20 || p[0]>>4 != 4 {
		return Verdict{Class: ClassOther}
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl {
		return Verdict{Class: ClassOther}
	}
	src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	if lanRange.Contains(src) || lanRange.Contains(dst) {
		return Verdict{Class: ClassOther, Leak: fmt.Sprintf("LAN address in a WAN IP header: %v -> %v proto %d", src, dst, p[9])}
	}
	proto := p[9]
	flags := binary.BigEndian.Uint16(p[6:8])
	offset, more := flags&0x1fff, flags&0x2000 != 0
	key := fragKey{src, dst, binary.BigEndian.Uint16(p[4:6]), proto}
	if offset != 0 && !quoted {
		if class, ok := c.frags[key]; ok {
			if !more {
				delete(c.frags, key)
			}
			return Verdict{Class: class}
		}
		return Verdict{Class: ClassOther}
	}
	body := p[ihl:]
	var v Verdict
	switch proto {
	case 17:
		v = Verdict{Class: classifyUDP(body)}
	case 6:
		v = Verdict{Class: classifyTCP(body)}
	case 1:
		if quoted {
			return Verdict{Class: ClassOther}
		}
		v = c.classifyICMP(body)
	default:
		v = Verdict{Class: ClassOther}
	}
	if more && !quoted && v.Class != ClassOther {
		c.frags[key] = v.Class
	}
	return v
}

// classifyTCP accepts only the appliance's connections to the update
// server: nothing else on the WAN speaks TCP.
func classifyTCP(b []byte) string {
	if len(b) < 20 {
		return ClassOther
	}
	if src, dst := binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4]); src == UpdatePort || dst == UpdatePort {
		return ClassUpdate
	}
	return ClassOther
}

func classifyUDP(b []byte) string {
	if len(b) < 8 {
		return ClassOther
	}
	sport, dport := binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4])
	data := b[8:]
	has := func(port uint16) bool { return sport == port || dport == port }
	switch {
	case has(500):
		return ClassIKE
	case has(4500):
		switch {
		case len(data) == 1 && data[0] == 0xff:
			return ClassKeepalive
		case len(data) >= 4 && binary.BigEndian.Uint32(data) == 0:
			return ClassIKE
		}
		// An ICMP quote may end right after the UDP header; what it quoted
		// went to the ESP port, and the leak checks still see its headers.
		return ClassESPInUDP
	case has(67) && has(68):
		return ClassDHCP
	case has(123):
		return ClassNTP
	}
	return ClassOther
}

// classifyICMP accepts only errors (unreachable, time exceeded) about a
// packet of an accepted class, so that ICMP cannot smuggle anything else.
func (c *Classifier) classifyICMP(b []byte) Verdict {
	if len(b) < 8 || (b[0] != 3 && b[0] != 11) {
		return Verdict{Class: ClassOther}
	}
	inner := c.classifyIPv4(b[8:], true)
	if inner.Leak != "" {
		return Verdict{Class: ClassOther, Leak: "ICMP error quoting: " + inner.Leak}
	}
	if inner.Class == ClassOther {
		return Verdict{Class: ClassOther}
	}
	return Verdict{Class: ClassICMPError}
}

// classifyIPv6 accepts the link's own control traffic (neighbour and
// router discovery, MLD): ICMPv6, possibly behind a hop-by-hop header,
// between link-local, multicast or unspecified addresses. The LAN's IPv6
// (its ULA) must never appear here.
func classifyIPv6(p []byte) string {
	if len(p) < 40 || p[0]>>4 != 6 {
		return ClassOther
	}
	src, dst := netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
	for _, a := range []netip.Addr{src, dst} {
		if !a.IsLinkLocalUnicast() && !a.IsMulticast() && !a.IsUnspecified() {
			return ClassOther
		}
	}
	next, rest := p[6], p[40:]
	if next == 0 && len(rest) >= 8 {
		n := (int(rest[1]) + 1) * 8
		if len(rest) < n {
			return ClassOther
		}
		next, rest = rest[0], rest[n:]
	}
	if next == 58 && len(rest) >= 4 {
		return ClassIPv6ND
	}
	return ClassOther
}
