package network

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkByName looks up an interface, naming it in the error.
func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("network: interface %s: %w", name, err)
	}
	return l, nil
}

// setupLink sets the MTU and brings the link up.
func (n *netw) setupLink(name string) (netlink.Link, error) {
	l, err := linkByName(name)
	if err != nil {
		return nil, err
	}
	if mtu := n.cfg.LinkMTU(); l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("network: %s: set mtu %d: %w", name, mtu, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("network: %s: up: %w", name, err)
	}
	return netlink.LinkByName(name)
}

// setAddrs makes want the link's addresses of the given family (besides
// IPv6 link-local ones, which the kernel owns). Unwanted addresses go
// first: deleting a primary IPv4 address deletes the secondaries of its
// subnet with it, which would take a just-added wanted address along.
func setAddrs(l netlink.Link, family int, want []*netlink.Addr) error {
	have, err := netlink.AddrList(l, family)
	if err != nil {
		return fmt.Errorf("network: %s: list addresses: %w", l.Attrs().Name, err)
	}
	for _, a := range have {
		p, ok := fromIPNet(a.IPNet.IP, a.IPNet.Mask)
		if !ok || p.Addr().IsLinkLocalUnicast() || slices.ContainsFunc(want, func(w *netlink.Addr) bool { return w.IPNet.String() == a.IPNet.String() }) {
			continue
		}
		if err := netlink.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("network: %s: remove %v: %w", l.Attrs().Name, p, err)
		}
	}
	for _, a := range want {
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("network: %s: add %v: %w", l.Attrs().Name, a.IPNet, err)
		}
	}
	return nil
}

func toAddrs(ps []netip.Prefix) []*netlink.Addr {
	out := make([]*netlink.Addr, len(ps))
	for i, p := range ps {
		out[i] = toAddr(p)
	}
	return out
}

func toAddr(p netip.Prefix) *netlink.Addr {
	a, _ := netlink.ParseAddr(p.String())
	return a
}

func fromIPNet(ip []byte, mask []byte) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	ones := 0
	for _, b := range mask {
		for ; b&0x80 != 0; b <<= 1 {
			ones++
		}
	}
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// replaceRoute installs dst via gw on l, replacing a route to dst.
func replaceRoute(l netlink.Link, dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Protocol: unix.RTPROT_STATIC}
	if dst.Bits() > 0 {
		_, r.Dst, _ = parseCIDR(dst)
	} else if dst.Addr().Is4() {
		r.Family = unix.AF_INET
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("network: route %v via %v dev %s: %w", dst, gw, l.Attrs().Name, err)
	}
	return nil
}
