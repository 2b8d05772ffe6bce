package config

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The LAN services' sections: lan.dhcp (the DHCP server's pool, lease time
// and reservations) and dns.internal (split DNS through the tunnel).

// DHCPServer is the lan.dhcp section.
type DHCPServer struct {
	// Pool is the range handed out dynamically; absent: the upper half of
	// the first IPv4 LAN subnet.
	Pool *Pool `json:"pool,omitempty"`
	// LeaseTime is a Go duration, "2m".."7d"; empty: 12h.
	LeaseTime    string        `json:"lease_time,omitempty"`
	Reservations []Reservation `json:"reservations,omitempty"`
}

// Pool is an inclusive range of IPv4 addresses.
type Pool struct {
	Start netip.Addr `json:"start"`
	End   netip.Addr `json:"end"`
}

// Reservation gives one host, by MAC address, a fixed address.
type Reservation struct {
	MAC      string     `json:"mac"`
	Address  netip.Addr `json:"address"`
	Hostname string     `json:"hostname,omitempty"`
}

// InternalDomain is one split-DNS domain and the resolvers behind the tunnel
// that answer for it.
type InternalDomain struct {
	Domain  string       `json:"domain"`
	Servers []netip.Addr `json:"servers"`
}

const (
	// DefaultLeaseTime is the DHCP lease when lan.dhcp.lease_time is unset.
	DefaultLeaseTime = 12 * time.Hour
	minLeaseTime     = 2 * time.Minute
	maxLeaseTime     = 7 * 24 * time.Hour
	// MaxPool bounds the dynamic pool, and with it the server's lease table:
	// a LAN host inventing MAC addresses can hold at most this many.
	MaxPool = 4096
	// maxReservations bounds the static table likewise.
	maxReservations = 1024
	maxInternal     = 32
)

// DHCPSettings is the LAN DHCP server's configuration with every default
// applied, as the server uses it.
type DHCPSettings struct {
	Server       netip.Addr   // the appliance's LAN address: server id and router
	Subnet       netip.Prefix // the LAN subnet Server is in
	Start, End   netip.Addr   // the dynamic pool, inclusive
	LeaseTime    time.Duration
	Reservations []DHCPReservation
}

// DHCPReservation is a validated reservation.
type DHCPReservation struct {
	MAC      net.HardwareAddr
	Address  netip.Addr
	Hostname string
}

// DHCP returns the DHCP server's settings; ok is false when the LAN has no
// IPv4 subnet to serve. Call it on a validated config only.
func (c *Config) DHCP() (s DHCPSettings, ok bool) {
	var lan netip.Prefix
	for _, p := range c.LAN.Addresses {
		if p.Addr().Is4() && p.Bits() <= 30 {
			lan = p
			break
		}
	}
	if !lan.IsValid() {
		return s, false
	}
	s = DHCPSettings{Server: lan.Addr(), Subnet: lan.Masked(), LeaseTime: DefaultLeaseTime}
	s.Start, s.End = defaultPool(s.Subnet)
	d := c.LAN.DHCP
	if d == nil {
		return s, true
	}
	if d.Pool != nil {
		s.Start, s.End = d.Pool.Start, d.Pool.End
	}
	if d.LeaseTime != "" {
		s.LeaseTime, _ = parseDuration(d.LeaseTime)
	}
	for _, r := range d.Reservations {
		mac, _ := net.ParseMAC(r.MAC)
		s.Reservations = append(s.Reservations, DHCPReservation{MAC: mac, Address: r.Address, Hostname: r.Hostname})
	}
	return s, true
}

// defaultPool is the upper half of the subnet's host addresses, at most
// MaxPool of them: the lower half is left for static hosts.
func defaultPool(subnet netip.Prefix) (start, end netip.Addr) {
	first := subnet.Addr().Next()
	last := lastAddr(subnet).Prev() // not the broadcast address
	n := poolSize(first, last)
	start = addN(first, n/2)
	if poolSize(start, last) > MaxPool {
		start = addN(last, -(MaxPool - 1))
	}
	return start, last
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func addN(a netip.Addr, n int64) netip.Addr {
	v := new(big.Int).SetBytes(a.AsSlice())
	v.Add(v, big.NewInt(n))
	b := v.FillBytes(make([]byte, len(a.AsSlice())))
	out, _ := netip.AddrFromSlice(b)
	return out
}

// poolSize counts the addresses from start to end inclusive; 0 if end is
// before start.
func poolSize(start, end netip.Addr) int64 {
	if end.Less(start) {
		return 0
	}
	s := new(big.Int).SetBytes(start.AsSlice())
	e := new(big.Int).SetBytes(end.AsSlice())
	return new(big.Int).Sub(e, s).Int64() + 1
}

// parseDuration takes Go durations plus a "d" suffix for days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && strings.Trim(days, "0123456789") == "" {
		d, err := time.ParseDuration(days + "h")
		return d * 24, err
	}
	return time.ParseDuration(s)
}

func (c *Config) validateDHCP(p *problems) {
	d := c.LAN.DHCP
	s, ok := c.DHCP()
	if !ok {
		if c.Firewall.LAN.DHCP || d != nil {
			p.add("lan.addresses", "expected an IPv4 address with a prefix of /30 or shorter for the DHCP server to serve (firewall.lan.dhcp or lan.dhcp is set)")
		}
		return
	}
	if d == nil {
		return
	}
	if d.Pool != nil {
		pool := d.Pool
		for _, f := range []struct {
			name string
			a    netip.Addr
		}{{"lan.dhcp.pool.start", pool.Start}, {"lan.dhcp.pool.end", pool.End}} {
			switch {
			case !f.a.IsValid():
				p.add(f.name, `expected an IPv4 address like "198.18.1.100"`)
			case !s.Subnet.Contains(f.a) || f.a == s.Subnet.Addr() || f.a == lastAddr(s.Subnet):
				p.add(f.name, "expected a host address inside the LAN subnet %v, got %v", s.Subnet, f.a)
			}
		}
		if pool.Start.IsValid() && pool.End.IsValid() && s.Subnet.Contains(pool.Start) && s.Subnet.Contains(pool.End) {
			switch n := poolSize(pool.Start, pool.End); {
			case n == 0:
				p.add("lan.dhcp.pool", "expected start %v at or before end %v", pool.Start, pool.End)
			case n > MaxPool:
				p.add("lan.dhcp.pool", "expected at most %d addresses, got %d", MaxPool, n)
			}
		}
	}
	if d.LeaseTime != "" {
		lt, err := parseDuration(d.LeaseTime)
		if err != nil || lt < minLeaseTime || lt > maxLeaseTime {
			p.add("lan.dhcp.lease_time", `expected a duration from "2m" to "7d" like "12h" (or leave out for 12h), got %q`, d.LeaseTime)
		}
	}
	if len(d.Reservations) > maxReservations {
		p.add("lan.dhcp.reservations", "expected at most %d reservations, got %d", maxReservations, len(d.Reservations))
		return
	}
	macs := map[string]int{}
	addrs := map[netip.Addr]int{}
	for i, r := range d.Reservations {
		f := fmt.Sprintf("lan.dhcp.reservations[%d]", i)
		mac, err := net.ParseMAC(r.MAC)
		switch {
		case err != nil || len(mac) != 6:
			p.add(f+".mac", `expected an Ethernet MAC address like "52:54:00:12:34:56", got %q`, r.MAC)
		case macs[mac.String()] > 0:
			p.add(f+".mac", "expected each MAC address once, %s is also in reservations[%d]", mac, macs[mac.String()]-1)
		default:
			macs[mac.String()] = i + 1
		}
		switch a := r.Address; {
		case !a.IsValid() || !a.Is4():
			p.add(f+".address", `expected an IPv4 address like "198.18.1.20"`)
		case !s.Subnet.Contains(a) || a == s.Subnet.Addr() || a == lastAddr(s.Subnet):
			p.add(f+".address", "expected a host address inside the LAN subnet %v, got %v", s.Subnet, a)
		case a == s.Server:
			p.add(f+".address", "expected an address other than the appliance's own %v", a)
		case addrs[a] > 0:
			p.add(f+".address", "expected each address once, %v is also in reservations[%d]", a, addrs[a]-1)
		default:
			addrs[a] = i + 1
		}
		if r.Hostname != "" && (!validHostname(r.Hostname) || strings.Contains(r.Hostname, ".")) {
			p.add(f+".hostname", `expected a host name label like "printer", got %q`, r.Hostname)
		}
	}
}

func (c *Config) validateInternal(p *problems) {
	if len(c.DNS.Internal) > maxInternal {
		p.add("dns.internal", "expected at most %d domains, got %d", maxInternal, len(c.DNS.Internal))
		return
	}
	remote := c.RemoteSubnets()
	seen := map[string]int{}
	for i, d := range c.DNS.Internal {
		f := fmt.Sprintf("dns.internal[%d]", i)
		name := strings.ToLower(strings.TrimSuffix(d.Domain, "."))
		switch {
		case !validHostname(name):
			p.add(f+".domain", `expected a domain name like "corp.example", got %q`, d.Domain)
		case seen[name] > 0:
			p.add(f+".domain", "expected each domain once, %q is also dns.internal[%d]", name, seen[name]-1)
		default:
			seen[name] = i + 1
		}
		if len(d.Servers) == 0 || len(d.Servers) > 3 {
			p.add(f+".servers", `expected 1..3 resolver addresses like ["198.19.0.53"], got %d`, len(d.Servers))
		}
		for j, a := range d.Servers {
			sf := fmt.Sprintf("%s.servers[%d]", f, j)
			switch {
			case !a.IsValid() || a.IsUnspecified():
				p.add(sf, `expected an IP address like "198.19.0.53"`)
			case c.Tunnel == nil:
				p.add(sf, "expected a resolver on the far side of the tunnel, but no tunnel is configured")
			case !slices.ContainsFunc(remote, func(r netip.Prefix) bool { return r.Contains(a) }):
				p.add(sf, "expected an address inside tunnel.remote_subnets %v (internal names are asked only through the tunnel), got %v", remote, a)
			}
		}
	}
	if len(c.DNS.Internal) > 0 && c.Tunnel != nil {
		if _, ok := c.InternalSource(); !ok {
			p.add("dns.internal", "expected a lan.addresses entry inside tunnel.local_subnets %v to send internal queries from", c.Tunnel.LocalSubnets)
		}
	}
}

// InternalSource is the LAN address the DNS forwarder sends internal
// queries from: inside the tunnel's local subnets, so that the IPsec policy
// carries them (the firewall drops anything to the remote subnets that
// would leave in clear).
func (c *Config) InternalSource() (netip.Addr, bool) {
	if c.Tunnel == nil {
		return netip.Addr{}, false
	}
	for _, p := range c.LAN.Addresses {
		for _, l := range c.Tunnel.LocalSubnets {
			if l.Contains(p.Addr()) {
				return p.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}
