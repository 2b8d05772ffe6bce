// Package ra sends IPv6 router advertisements on the LAN for its ULA
// prefix, so LAN hosts configure an address in it by SLAAC (the appliance
// itself has fdXX:XXXX:XXXX::1/64 there). The appliance is not an IPv6
// default router (router lifetime 0): the ULA is for reaching the appliance
// and its DNS forwarder, not the internet.
package ra

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ICMPv6 types (RFC 4861).
const (
	typeRouterSolicitation  = 133
	typeRouterAdvertisement = 134
)

// Option types.
const (
	optSourceLinkAddr = 1
	optPrefixInfo     = 3
	optMTU            = 5
	optRDNSS          = 25 // RFC 8106
)

// Advert is what one RA says.
type Advert struct {
	HopLimit       uint8
	RouterLifetime time.Duration
	SourceLinkAddr net.HardwareAddr
	MTU            uint32 // 0: no MTU option
	Prefixes       []Prefix
	RDNSS          []netip.Addr
	RDNSSLifetime  time.Duration
}

// Prefix is one prefix information option.
type Prefix struct {
	Prefix             netip.Prefix
	OnLink, Autonomous bool
	Valid, Preferred   time.Duration
}

// Marshal renders the RA's ICMPv6 message; the kernel fills the checksum.
func (a *Advert) Marshal() []byte {
	b := make([]byte, 16, 128)
	b[0] = typeRouterAdvertisement
	b[4] = a.HopLimit
	binary.BigEndian.PutUint16(b[6:], uint16(a.RouterLifetime/time.Second))
	if len(a.SourceLinkAddr) == 6 {
		b = append(b, optSourceLinkAddr, 1)
		b = append(b, a.SourceLinkAddr...)
	}
	if a.MTU != 0 {
		b = append(b, optMTU, 1, 0, 0)
		b = binary.BigEndian.AppendUint32(b, a.MTU)
	}
	for _, p := range a.Prefixes {
		var flags byte
		if p.OnLink {
			flags |= 0x80
		}
		if p.Autonomous {
			flags |= 0x40
		}
		b = append(b, optPrefixInfo, 4, byte(p.Prefix.Bits()), flags)
		b = binary.BigEndian.AppendUint32(b, uint32(p.Valid/time.Second))
		b = binary.BigEndian.AppendUint32(b, uint32(p.Preferred/time.Second))
		b = append(b, 0, 0, 0, 0)
		a16 := p.Prefix.Masked().Addr().As16()
		b = append(b, a16[:]...)
	}
	if len(a.RDNSS) > 0 {
		b = append(b, optRDNSS, byte(1+2*len(a.RDNSS)), 0, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(a.RDNSSLifetime/time.Second))
		for _, s := range a.RDNSS {
			a16 := s.As16()
			b = append(b, a16[:]...)
		}
	}
	return b
}

var errShort = errors.New("ra: message too short")

// options walks the options of an ND message body; each must be whole and
// non-empty (RFC 4861 4.6: a zero length is invalid and the packet is
// dropped).
func options(b []byte, f func(typ byte, body []byte) error) error {
	for len(b) > 0 {
		if len(b) < 2 {
			return errShort
		}
		n := int(b[1]) * 8
		if n == 0 {
			return errors.New("ra: option of length 0")
		}
		if n > len(b) {
			return fmt.Errorf("ra: option %d of %d bytes, %d left", b[0], n, len(b))
		}
		if err := f(b[0], b[2:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// ParseAdvert reads an RA's ICMPv6 message (as the kernel delivers it on
// a raw socket, from the ICMPv6 header on).
func ParseAdvert(b []byte) (*Advert, error) {
	if len(b) < 16 {
		return nil, errShort
	}
	if b[0] != typeRouterAdvertisement || b[1] != 0 {
		return nil, fmt.Errorf("ra: type %d code %d, not a router advertisement", b[0], b[1])
	}
	a := &Advert{HopLimit: b[4], RouterLifetime: time.Duration(binary.BigEndian.Uint16(b[6:])) * time.Second}
	err := options(b[16:], func(typ byte, body []byte) error {
		switch typ {
		case optSourceLinkAddr:
			if len(body) >= 6 {
				a.SourceLinkAddr = net.HardwareAddr(append([]byte(nil), body[:6]...))
			}
		case optMTU:
			if len(body) != 6 {
				return errors.New("ra: bad MTU option")
			}
			a.MTU = binary.BigEndian.Uint32(body[2:])
		case optPrefixInfo:
			if len(body) != 30 {
				return errors.New("ra: bad prefix option")
			}
			bits := int(body[0])
			if bits > 128 {
				return fmt.Errorf("ra: prefix length %d", bits)
			}
			addr := netip.AddrFrom16([16]byte(body[14:30]))
			a.Prefixes = append(a.Prefixes, Prefix{
				Prefix: netip.PrefixFrom(addr, bits).Masked(), OnLink: body[1]&0x80 != 0, Autonomous: body[1]&0x40 != 0,
				Valid:     time.Duration(binary.BigEndian.Uint32(body[2:])) * time.Second,
				Preferred: time.Duration(binary.BigEndian.Uint32(body[6:])) * time.Second,
			})
		case optRDNSS:
			if len(body) < 22 || (len(body)-6)%16 != 0 {
				return errors.New("ra: bad RDNSS option")
			}
			a.RDNSSLifetime = time.Duration(binary.BigEndian.Uint32(body[2:])) * time.Second
			for s := body[6:]; len(s) >= 16; s = s[16:] {
				a.RDNSS = append(a.RDNSS, netip.AddrFrom16([16]byte(s[:16])))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// isSolicitation validates a router solicitation from the LAN: type, code,
// length and well-formed options. Anything else is ignored.
func isSolicitation(b []byte) bool {
	if len(b) < 8 || b[0] != typeRouterSolicitation || b[1] != 0 {
		return false
	}
	return options(b[8:], func(byte, []byte) error { return nil }) == nil
}
