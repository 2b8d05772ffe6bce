package dhcpd

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// maxPacket is the largest DHCP message read; RFC 2131 clients send at most
// 576 bytes unless they announce more, and an Ethernet frame holds 1500.
const maxPacket = 1500

// reply is a message to send and where.
type reply struct {
	msg *dhcpv4.DHCPv4
	dst netip.AddrPort
}

// outcome says what handling a message did to the lease table, for the
// caller's persistence and log.
type outcome uint8

const (
	unchanged outcome = iota
	leasesChanged
)

// handlePacket parses one datagram from the LAN and answers it. Anything
// malformed, from a relay or not from an Ethernet client is dropped without
// an answer. It is the fuzzed entry point: no input may make it panic or
// grow the table beyond the pool.
func (s *Server) handlePacket(b []byte, now time.Time) (*reply, outcome) {
	if len(b) > maxPacket {
		return nil, unchanged
	}
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return nil, unchanged
	}
	return s.handle(m, now)
}

func (s *Server) handle(m *dhcpv4.DHCPv4, now time.Time) (*reply, outcome) {
	if m.OpCode != dhcpv4.OpcodeBootRequest || m.HWType != iana.HWTypeEthernet || len(m.ClientHWAddr) != 6 {
		return nil, unchanged
	}
	// This server serves its own link only; relayed requests come from
	// subnets it has no pool for.
	if g := m.GatewayIPAddr; g != nil && !g.IsUnspecified() {
		return nil, unchanged
	}
	mac := macKey(m.ClientHWAddr)
	t := s.table
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		a, ok := t.offer(mac, addrOf(m.RequestedIPAddress()), now)
		if !ok {
			s.log.Warn("dhcp: pool exhausted", "mac", mac)
			return nil, unchanged
		}
		return s.answer(m, dhcpv4.MessageTypeOffer, a), unchanged

	case dhcpv4.MessageTypeRequest:
		if sid := m.ServerIdentifier(); sid != nil {
			if addrOf(sid) != s.set.Server {
				t.forget(mac) // the client took another server's offer
				return nil, unchanged
			}
		}
		a := addrOf(m.RequestedIPAddress())
		if !a.IsValid() {
			a = addrOf(m.ClientIPAddr) // renewing or rebinding
		}
		if !a.IsValid() {
			return nil, unchanged
		}
		if !s.set.Subnet.Contains(a) {
			return s.nak(m), unchanged // the client moved here from another network
		}
		if !t.bind(mac, a, hostname(m), now) {
			return s.nak(m), unchanged
		}
		s.log.Info("dhcp: lease", "mac", mac, "addr", a, "hostname", hostname(m))
		return s.answer(m, dhcpv4.MessageTypeAck, a), leasesChanged

	case dhcpv4.MessageTypeRelease:
		if t.release(mac, addrOf(m.ClientIPAddr), now) {
			return nil, leasesChanged
		}
	case dhcpv4.MessageTypeDecline:
		t.decline(mac, addrOf(m.RequestedIPAddress()), now)
		return nil, leasesChanged
	case dhcpv4.MessageTypeInform:
		ci := addrOf(m.ClientIPAddr)
		if !s.set.Subnet.Contains(ci) {
			return nil, unchanged
		}
		r := s.answer(m, dhcpv4.MessageTypeAck, netip.Addr{})
		r.dst = netip.AddrPortFrom(ci, dhcpv4.ClientPort)
		return r, unchanged
	}
	return nil, unchanged
}

// answer builds an OFFER or ACK of yiaddr (invalid: none, for INFORM).
func (s *Server) answer(m *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yiaddr netip.Addr) *reply {
	server := net.IP(s.set.Server.AsSlice())
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
		dhcpv4.WithNetmask(net.CIDRMask(s.set.Subnet.Bits(), 32)),
		dhcpv4.WithRouter(server),
	}
	if yiaddr.IsValid() {
		lt := s.set.LeaseTime
		mods = append(mods,
			dhcpv4.WithYourIP(net.IP(yiaddr.AsSlice())),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lt)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lt/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lt*7/8)))
	}
	if len(s.opts.DNS) > 0 {
		ips := make([]net.IP, len(s.opts.DNS))
		for i, a := range s.opts.DNS {
			ips[i] = a.AsSlice()
		}
		mods = append(mods, dhcpv4.WithDNS(ips...))
	}
	if s.opts.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.opts.Domain)))
	}
	resp, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return nil
	}
	// Renewals are unicast to the client's address; everything else is
	// broadcast, as the client has no address yet (no ARP entry to inject).
	dst := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if ci := addrOf(m.ClientIPAddr); ci.IsValid() && typ == dhcpv4.MessageTypeAck {
		dst = netip.AddrPortFrom(ci, dhcpv4.ClientPort)
	} else {
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), dhcpv4.ClientPort)
	}
	return &reply{msg: resp, dst: dst}
}

func (s *Server) nak(m *dhcpv4.DHCPv4) *reply {
	resp, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(s.set.Server.AsSlice()))))
	if err != nil {
		return nil
	}
	return &reply{msg: resp, dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), dhcpv4.ClientPort)}
}

// addrOf converts an IPv4 from a message; invalid for none or 0.0.0.0.
func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// hostname keeps a client's host name option only as one short DNS label:
// it is shown in the log and status, and a LAN host chooses it.
func hostname(m *dhcpv4.DHCPv4) string {
	h := strings.ToLower(m.HostName())
	if len(h) > 63 {
		h = h[:63]
	}
	if strings.Trim(h, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return ""
	}
	return h
}
