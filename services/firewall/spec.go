// Package firewall generates the appliance's nftables ruleset from the config
// and applies it in one kernel transaction, so that no packet ever meets a
// ruleset that is half old and half new, and reads it back to verify it.
package firewall

import (
	"fmt"
	"net/netip"

	"github.com/pqbranch/pqbranch/services/config"
)

// Spec is everything the ruleset depends on.
type Spec struct {
	WAN, LAN string // interface names

	ManagementPort   uint16 // TCP, LAN side
	ServeDHCP        bool
	ServeDNS         bool
	InternetBreakout bool
	// RemoteSubnets only ever leave through the IPsec policy.
	RemoteSubnets []netip.Prefix
	// NoTunnel closes IKE and ESP on the WAN too: with no tunnel
	// configured (a first-boot default) nothing at all is open there.
	NoTunnel bool
}

// SpecFrom derives the ruleset's inputs from a validated config.
func SpecFrom(c *config.Config, wan, lan string) Spec {
	return Spec{
		WAN:              wan,
		LAN:              lan,
		ManagementPort:   uint16(c.Firewall.Port()),
		ServeDHCP:        c.Firewall.LAN.DHCP,
		ServeDNS:         c.Firewall.LAN.DNS,
		InternetBreakout: c.Firewall.InternetBreakout,
		RemoteSubnets:    c.RemoteSubnets(),
		NoTunnel:         c.Tunnel == nil,
	}
}

func (s Spec) validate() error {
	switch {
	case s.WAN == "" || s.LAN == "":
		return fmt.Errorf("firewall: WAN and LAN interface names are required")
	case len(s.WAN) >= 16 || len(s.LAN) >= 16:
		return fmt.Errorf("firewall: interface name too long")
	case s.WAN == s.LAN:
		return fmt.Errorf("firewall: WAN and LAN are the same interface %q", s.WAN)
	case s.ManagementPort == 0:
		return fmt.Errorf("firewall: management port is 0")
	}
	for _, p := range s.RemoteSubnets {
		if !p.IsValid() {
			return fmt.Errorf("firewall: invalid remote subnet %v", p)
		}
	}
	return nil
}
