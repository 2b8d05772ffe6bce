package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// validate checks everything decoding cannot: required fields, ranges and
// how fields relate. It returns every problem, not just the first, so one
// edit can fix them all.
func (c *Config) validate() problems {
	var p problems
	if c.Serial < 0 {
		p.add("serial", "expected a whole number 0 or higher (the site config revision), got %d", c.Serial)
	}
	if !validHostname(c.Hostname) {
		p.add("hostname", `expected a host name like "branch-1" (letters, digits, '-', '.', at most 253 characters), got %q`, c.Hostname)
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 9000) {
		p.add("mtu", "expected 1280..9000 (or leave out for 1500), got %d", c.MTU)
	}
	c.WAN.validate(&p)
	c.LAN.validate(&p)
	for i, a := range c.DNS.Servers {
		checkAddr(&p, fmt.Sprintf("dns.servers[%d]", i), a)
	}
	for i, s := range c.DNS.Search {
		if !validHostname(s) {
			p.add(fmt.Sprintf("dns.search[%d]", i), "expected a domain name, got %q", s)
		}
	}
	c.validateInternal(&p)
	c.validateDHCP(&p)
	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		checkPrefix(&p, f+".to", r.To, false)
		checkAddr(&p, f+".via", r.Via)
	}
	if c.Firewall.ManagementPort < 0 || c.Firewall.ManagementPort > 65535 {
		p.add("firewall.management_port", "expected a TCP port 1..65535, got %d", c.Firewall.ManagementPort)
	}
	if c.Tunnel != nil {
		if err := c.Tunnel.Validate(); err != nil {
			p = append(p, tunnelProblems(err)...)
		}
	}
	for i, s := range c.Time.NTP {
		if !validServer(s) {
			p.add(fmt.Sprintf("time.ntp[%d]", i), `expected "host" or "host:port", got %q`, s)
		}
	}
	c.Update.validate(&p)
	c.validateLog(&p)
	return p
}

func (w *WAN) validate(p *problems) {
	switch w.Mode {
	case "dhcp":
		if w.Static != nil {
			p.add("wan.static", `expected no static section when wan.mode is "dhcp"`)
		}
	case "static":
		if w.Static == nil {
			p.add("wan.static", `expected an object with address and gateway when wan.mode is "static"`)
			return
		}
		s := w.Static
		checkPrefix(p, "wan.static.address", s.Address, true)
		if !s.Gateway.IsValid() {
			p.add("wan.static.gateway", `expected an IP address like "192.0.2.1"`)
		} else if s.Address.IsValid() && !s.Address.Contains(s.Gateway) {
			p.add("wan.static.gateway", "expected an address inside %v, got %v", s.Address.Masked(), s.Gateway)
		}
		for i, a := range s.DNS {
			checkAddr(p, fmt.Sprintf("wan.static.dns[%d]", i), a)
		}
	case "":
		p.add("wan.mode", `expected "dhcp" or "static"`)
	default:
		p.add("wan.mode", `expected "dhcp" or "static", got %q`, w.Mode)
	}
}

func (l *LAN) validate(p *problems) {
	if len(l.Addresses) == 0 {
		p.add("lan.addresses", `expected at least one address prefix like "198.18.1.1/24"`)
	}
	for i, a := range l.Addresses {
		checkPrefix(p, fmt.Sprintf("lan.addresses[%d]", i), a, true)
	}
}

// checkPrefix wants a valid prefix; host says it names an interface address,
// which must not be the network's own address.
func checkPrefix(p *problems, field string, v netip.Prefix, host bool) {
	switch {
	case !v.IsValid():
		p.add(field, `expected an address prefix like "198.18.1.1/24"`)
	case host && v.Addr().Is4() && v.Bits() < 31 && v.Addr() == v.Masked().Addr():
		p.add(field, "expected a host address inside the subnet, got the network address %v", v)
	case !host && v != v.Masked():
		p.add(field, "expected a network prefix (%v), got host bits set in %v", v.Masked(), v)
	}
}

func checkAddr(p *problems, field string, a netip.Addr) {
	if !a.IsValid() || a.IsUnspecified() {
		p.add(field, `expected an IP address like "192.0.2.1"`)
	}
}

// tunnelProblems turns the tunnel's joined "tunnel.field: problem" errors
// into located problems.
func tunnelProblems(err error) problems {
	var p problems
	for _, line := range strings.Split(err.Error(), "\n") {
		field, msg, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(field, "tunnel") {
			field, msg = "tunnel", line
		}
		p = append(p, FieldError{Field: field, Problem: msg})
	}
	return p
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func validServer(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host = s // no port: the default
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return false // "host:" too: net.Dial would take the empty port for 0
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return validHostname(host)
}
