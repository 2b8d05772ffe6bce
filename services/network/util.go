package network

import (
	"net"
	"net/netip"
)

func parseCIDR(p netip.Prefix) (net.IP, *net.IPNet, error) {
	return net.ParseCIDR(p.Masked().String())
}
