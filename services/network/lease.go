package network

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// lease is what the appliance takes from a DHCPv4 ACK, checked: the ACK
// comes from whoever answers on the WAN.
type lease struct {
	Addr   netip.Prefix
	Router netip.Addr // invalid when the server gave none on the subnet
	DNS    []netip.Addr
	Server netip.Addr

	Lease, T1, T2 time.Duration
}

const (
	minLease = 30 * time.Second
	// An "infinite" lease is still renewed daily, so a changed server
	// configuration is picked up.
	maxLease = 24 * time.Hour
)

// parseLease checks an ACK and extracts the lease.
func parseLease(m *dhcpv4.DHCPv4) (lease, error) {
	var l lease
	if m.MessageType() != dhcpv4.MessageTypeAck {
		return l, fmt.Errorf("dhcp: %v is not an ACK", m.MessageType())
	}
	ip, ok := netip.AddrFromSlice(m.YourIPAddr)
	ip = ip.Unmap()
	if !ok || !ip.Is4() || !ip.IsGlobalUnicast() && !ip.IsPrivate() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return l, fmt.Errorf("dhcp: unusable address %v", m.YourIPAddr)
	}
	mask := m.SubnetMask()
	ones, bits := net.IPMask(mask).Size()
	if mask == nil || bits != 32 || ones < 8 || ones > 30 {
		return l, fmt.Errorf("dhcp: unusable subnet mask %v", mask)
	}
	l.Addr = netip.PrefixFrom(ip, ones)
	if l.Addr.Masked().Addr() == ip || lastAddr(l.Addr) == ip {
		return l, fmt.Errorf("dhcp: %v is the network or broadcast address of its subnet", l.Addr)
	}
	for _, r := range m.Router() {
		if a, ok := netip.AddrFromSlice(r); ok && l.Addr.Contains(a.Unmap()) && a.Unmap() != ip {
			l.Router = a.Unmap()
			break
		}
	}
	for _, d := range m.DNS() {
		if a, ok := netip.AddrFromSlice(d); ok && a.Unmap().Is4() && !a.IsUnspecified() && !a.IsMulticast() && len(l.DNS) < 3 {
			l.DNS = append(l.DNS, a.Unmap())
		}
	}
	if s, ok := netip.AddrFromSlice(m.ServerIdentifier()); ok {
		l.Server = s.Unmap()
	}
	l.Lease = clamp(m.IPAddressLeaseTime(time.Hour), minLease, maxLease)
	l.T1 = m.IPAddressRenewalTime(l.Lease / 2)
	l.T2 = m.IPAddressRebindingTime(l.Lease * 7 / 8)
	// Servers get these wrong; fall back to the RFC 2131 defaults.
	if l.T1 <= 0 || l.T1 >= l.Lease {
		l.T1 = l.Lease / 2
	}
	if l.T2 <= l.T1 || l.T2 >= l.Lease {
		l.T2 = l.T1 + (l.Lease-l.T1)*3/4
	}
	return l, nil
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return min(max(d, lo), hi)
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
