package edge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Default addresses of the edge site: the test data centre the appliance
// connects to. Tests stay within 192.0.2.0/24 (WAN) and 198.18.0.0/15 (LANs).
const (
	EdgeWANAddr = "192.0.2.1"
	EdgeLANAddr = "198.19.0.1"
	DCAddr      = "198.19.0.2"
	DCNet       = "198.19.0.0/24"
)

// Site is an IPsec gateway namespace with one host namespace on a LAN
// behind it.
type Site struct {
	GW   *netns.NS // strongSwan runs here: "wan0" (if connected) and "lan0"
	Host *netns.NS // a host on the LAN: "eth0", routes to the test ranges via GW
}

// SiteConfig describes a site; zero fields take the edge site's defaults.
type SiteConfig struct {
	// Prefix names the namespaces (pqb-<prefix>gw-..., pqb-<prefix>host-...);
	// default "edge".
	Prefix string
	// LANAddr is the gateway's LAN address (CIDR), default 198.19.0.1/24;
	// HostAddr the host's, default 198.19.0.2/24.
	LANAddr, HostAddr string
	// Peer, when set, gets the other end of the gateway's WAN veth. With
	// nil the gateway has no WAN yet; connect it with netns.Veth.
	Peer *netns.NS
	// WANAddr is the gateway's WAN address, default 192.0.2.1/24.
	WANAddr string
	// PeerIf (default "wan0") and PeerAddr (CIDR, empty = unaddressed)
	// are the peer's end of the WAN veth.
	PeerIf, PeerAddr string
	// MTU of the WAN veth; 0 keeps 1500.
	MTU int
}

func (c SiteConfig) withDefaults() SiteConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Prefix, "edge")
	def(&c.LANAddr, EdgeLANAddr+"/24")
	def(&c.HostAddr, DCAddr+"/24")
	def(&c.WANAddr, EdgeWANAddr+"/24")
	def(&c.PeerIf, "wan0")
	return c
}

// NewEdgeSite builds the default edge site (gateway 192.0.2.1 on wan0, DC
// host 198.19.0.2 behind it) with its WAN connected to peer's interface
// "wan0" at peerAddr (CIDR, e.g. "192.0.2.2/24").
func NewEdgeSite(ctx context.Context, peer *netns.NS, peerAddr string) (*Site, error) {
	return NewSite(ctx, SiteConfig{Peer: peer, PeerAddr: peerAddr})
}

// NewSite builds a site. On error everything it created is removed.
func NewSite(ctx context.Context, cfg SiteConfig) (_ *Site, err error) {
	cfg = cfg.withDefaults()
	gwLAN, err := netip.ParsePrefix(cfg.LANAddr)
	if err != nil {
		return nil, fmt.Errorf("edge: site LAN address: %w", err)
	}
	s := &Site{}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if s.GW, err = netns.New(ctx, cfg.Prefix+"gw"); err != nil {
		return nil, err
	}
	if s.Host, err = netns.New(ctx, cfg.Prefix+"host"); err != nil {
		return nil, err
	}
	if err := netns.Veth(ctx, s.GW, "lan0", cfg.LANAddr, s.Host, "eth0", cfg.HostAddr, 0); err != nil {
		return nil, err
	}
	if cfg.Peer != nil {
		if err := netns.Veth(ctx, s.GW, "wan0", cfg.WANAddr, cfg.Peer, cfg.PeerIf, cfg.PeerAddr, cfg.MTU); err != nil {
			return nil, err
		}
	}
	if _, err := s.GW.Run(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	// Only the test ranges, no default route: a stray packet to any other
	// address has nowhere to go.
	for _, dst := range []string{"198.18.0.0/15", "192.0.2.0/24"} {
		if _, err := s.Host.Run(ctx, "ip", "route", "add", dst, "via", gwLAN.Addr().String()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close deletes both namespaces (killing what runs in them). It is safe to
// call more than once.
func (s *Site) Close() error {
	var errs []error
	for _, n := range []**netns.NS{&s.Host, &s.GW} {
		if *n != nil {
			errs = append(errs, (*n).Close())
			*n = nil
		}
	}
	return errors.Join(errs...)
}
