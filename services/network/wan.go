package network

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func (n *netw) configureStaticWAN() error {
	s := n.cfg.WAN.Static
	wan, err := linkByName(n.roles.WAN)
	if err != nil {
		return err
	}
	if err := setAddrs(wan, unix.AF_INET, toAddrs([]netip.Prefix{s.Address})); err != nil {
		return err
	}
	if err := replaceRoute(wan, netip.PrefixFrom(netip.IPv4Unspecified(), 0), s.Gateway); err != nil {
		return err
	}
	if err := n.wanRoutes(wan, s.Address); err != nil {
		return err
	}
	n.wanDNS = s.DNS
	n.opts.OnWANDNS(s.DNS)
	n.opts.OnWAN(s.Address)
	n.log.Info("wan configured", "if", n.roles.WAN, "addr", s.Address, "gw", s.Gateway)
	return n.writeResolvConf()
}

// wanRoutes adds the configured routes whose gateway is on the WAN subnet.
func (n *netw) wanRoutes(wan netlink.Link, subnet netip.Prefix) error {
	for _, r := range n.cfg.Routes {
		if subnet.Contains(r.Via) {
			if err := replaceRoute(wan, r.To, r.Via); err != nil {
				return err
			}
		}
	}
	return nil
}

// wanBound applies a DHCP lease. The address carries the lease's lifetime,
// so the kernel drops it by itself should this process die and not renew.
func (n *netw) wanBound(l lease) error {
	wan, err := linkByName(n.roles.WAN)
	if err != nil {
		return err
	}
	a := toAddr(l.Addr)
	secs := int(l.Lease / time.Second)
	a.ValidLft, a.PreferedLft = secs, secs
	// Also drops a previous lease's different address.
	if err := setAddrs(wan, unix.AF_INET, []*netlink.Addr{a}); err != nil {
		return err
	}
	if l.Router.IsValid() {
		if err := replaceRoute(wan, netip.PrefixFrom(netip.IPv4Unspecified(), 0), l.Router); err != nil {
			return err
		}
	}
	if err := n.wanRoutes(wan, l.Addr); err != nil {
		return err
	}
	n.wanDNS = l.DNS
	n.opts.OnWANDNS(l.DNS)
	n.opts.OnWAN(l.Addr)
	return n.writeResolvConf()
}

// wanExpired removes an expired lease's address (and so its routes).
func (n *netw) wanExpired(l lease) error {
	wan, err := linkByName(n.roles.WAN)
	if err != nil {
		return err
	}
	n.opts.OnWAN(netip.Prefix{})
	if err := netlink.AddrDel(wan, toAddr(l.Addr)); err != nil && err != unix.EADDRNOTAVAIL {
		return fmt.Errorf("network: %s: remove %v: %w", n.roles.WAN, l.Addr, err)
	}
	return nil
}
