package network

import (
	"crypto/sha256"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureLAN sets the LAN addresses, with the ULA if asked for. wan is
// the WAN link (for its MAC as ULA seed), nil to look it up.
func (n *netw) configureLAN(wan netlink.Link) error {
	lan, err := linkByName(n.roles.LAN)
	if err != nil {
		return err
	}
	var v4, v6 []netip.Prefix
	for _, p := range n.cfg.LAN.Addresses {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	if n.cfg.LAN.ULA {
		seed := n.opts.ULASeed
		if len(seed) == 0 {
			if wan == nil {
				if wan, err = linkByName(n.roles.WAN); err != nil {
					return err
				}
			}
			seed = wan.Attrs().HardwareAddr
		}
		v6 = append(v6, ULAAddress(ULA(seed), 0))
	}
	if err := setAddrs(lan, unix.AF_INET, toAddrs(v4)); err != nil {
		return err
	}
	if err := setAddrs(lan, unix.AF_INET6, toAddrs(v6)); err != nil {
		return err
	}
	for _, r := range n.cfg.Routes {
		for _, p := range n.cfg.LAN.Addresses {
			if p.Contains(r.Via) {
				if err := replaceRoute(lan, r.To, r.Via); err != nil {
					return err
				}
			}
		}
	}
	n.log.Info("lan configured", "if", n.roles.LAN, "v4", v4, "v6", v6)
	return nil
}

// ULA derives the device's RFC 4193 /48 from seed. RFC 4193 suggests
// hashing a time stamp with an EUI-64; hashing a device identifier instead
// keeps the prefix the same across reboots and re-installs, which is what
// LAN hosts with static or cached addresses need.
func ULA(seed []byte) netip.Prefix {
	h := sha256.Sum256(append([]byte("pqbranch-ula:"), seed...))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], h[:5]) // 40-bit global ID
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// ULAAddress is the appliance's address (::1) in subnet id of ula, as a /64.
func ULAAddress(ula netip.Prefix, subnet uint16) netip.Prefix {
	a := ula.Addr().As16()
	a[6], a[7] = byte(subnet>>8), byte(subnet)
	a[15] = 1
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}
