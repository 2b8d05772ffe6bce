// Package network configures the appliance's interfaces from the config:
// WAN by DHCPv4 or statically, LAN with static addresses and an optional
// stable IPv6 ULA, MTU, extra routes and /etc/resolv.conf. It follows link
// changes through netlink notifications rather than polling, and re-acquires
// the WAN lease when the link comes back.
package network

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/vishvananda/netlink"
)

// Roles names the interface that plays each role. The board file says which
// NIC is which; Resolve turns its matches into names.
type Roles struct {
	WAN, LAN string
}

// Options are the inputs that do not come from the config.
type Options struct {
	ResolvConf string // default /etc/resolv.conf
	// ULASeed makes the LAN's ULA prefix stable and unique to the device;
	// the WAN MAC address is used when empty.
	ULASeed []byte
	Log     *slog.Logger
	// OnWAN, if set, is told each time the WAN address changes (invalid
	// prefix: none), for the status page.
	OnWAN func(netip.Prefix)
	// OnWANDNS, if set, is told the resolvers learnt from DHCP or the
	// static WAN, each time they are (re)applied; the DNS forwarder uses
	// them when no dns.servers are configured.
	OnWANDNS func([]netip.Addr)
	// DNS, if set, is read whenever resolv.conf is written, instead of
	// the dns section of the config Run was given; with ResolvRefresh it
	// lets a change of dns.servers or dns.search apply without restarting
	// the network (and so without touching links, addresses or the lease).
	DNS func() config.DNS
	// ResolvRefresh rewrites resolv.conf on each receive.
	ResolvRefresh <-chan struct{}
}

func (o *Options) defaults() {
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.OnWAN == nil {
		o.OnWAN = func(netip.Prefix) {}
	}
	if o.OnWANDNS == nil {
		o.OnWANDNS = func([]netip.Addr) {}
	}
}

// Run configures the network for cfg and keeps it configured until ctx ends.
func Run(ctx context.Context, cfg *config.Config, roles Roles, opts Options) error {
	opts.defaults()
	n := &netw{cfg: cfg, roles: roles, opts: opts, log: opts.Log}
	return n.run(ctx)
}

type netw struct {
	cfg   *config.Config
	roles Roles
	opts  Options
	log   *slog.Logger

	wanDNS []netip.Addr // from DHCP or the static WAN
}

func (n *netw) run(ctx context.Context) error {
	// Subscribe before configuring, so no link change slips between the
	// first configuration and the first notification.
	updates := make(chan netlink.LinkUpdate, 32)
	done := make(chan struct{})
	var closing atomic.Bool
	defer func() { closing.Store(true); close(done) }()
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if !closing.Load() { // closing the subscription makes it fail once
				n.log.Error("link subscription", "err", err)
			}
		},
	}); err != nil {
		return fmt.Errorf("network: subscribe to link changes: %w", err)
	}
	wan, err := n.setupLink(n.roles.WAN)
	if err != nil {
		return err
	}
	if _, err := n.setupLink(n.roles.LAN); err != nil {
		return err
	}
	if err := n.configureLAN(wan); err != nil {
		return err
	}
	if err := n.writeResolvConf(); err != nil {
		return err
	}

	linkUp := make(chan struct{}, 1)
	errc := make(chan error, 1)
	if n.cfg.WAN.Mode == "dhcp" {
		d := &dhcpClient{iface: n.roles.WAN, log: n.log, bound: n.wanBound, expired: n.wanExpired}
		go func() { errc <- d.run(ctx, linkUp) }()
	} else if err := n.configureStaticWAN(); err != nil {
		return err
	}

	up := map[string]bool{n.roles.WAN: linkIsUp(wan)}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-n.opts.ResolvRefresh:
			if err := n.writeResolvConf(); err != nil {
				return err
			}
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("network: link subscription closed")
			}
			if err := n.onLinkUpdate(u, up, linkUp); err != nil {
				return err
			}
		}
	}
}

// onLinkUpdate reacts to a link coming up: the kernel drops routes of a
// downed link, and the WAN may now be on another network.
func (n *netw) onLinkUpdate(u netlink.LinkUpdate, up map[string]bool, linkUp chan<- struct{}) error {
	name := u.Link.Attrs().Name
	if name != n.roles.WAN && name != n.roles.LAN {
		return nil
	}
	isUp := linkIsUp(u.Link)
	was := up[name]
	up[name] = isUp
	if !isUp || was {
		if was && !isUp {
			n.log.Warn("link down", "if", name)
		}
		return nil
	}
	n.log.Info("link up", "if", name)
	switch {
	case name == n.roles.LAN:
		return n.configureLAN(nil)
	case n.cfg.WAN.Mode == "dhcp":
		select {
		case linkUp <- struct{}{}:
		default:
		}
		return nil
	default:
		return n.configureStaticWAN()
	}
}

func linkIsUp(l netlink.Link) bool {
	return l.Attrs().OperState == netlink.OperUp || l.Attrs().RawFlags&0x10000 != 0 // IFF_LOWER_UP
}
