package ra

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Timing (RFC 4861 6.2.1, 10): a few quick adverts after start so hosts
// that came up with the appliance configure at once, then one every
// interval, and at most one every minDelay however many hosts solicit.
const (
	initialAdverts  = 4
	initialInterval = 2 * time.Second
	defaultInterval = 200 * time.Second
	minDelay        = 3 * time.Second
	validLifetime   = 24 * time.Hour
	preferLifetime  = 4 * time.Hour
)

// Options configure the advertiser.
type Options struct {
	Interface string
	// Prefixes are the /64s to advertise, read at each advert so that the
	// ULA the network service puts on the interface is followed; default:
	// the interface's global and unique-local /64s.
	Prefixes func() []netip.Prefix
	// RDNSS are resolvers to announce (the appliance, when it serves DNS).
	RDNSS    []netip.Addr
	MTU      int
	Interval time.Duration
	Log      *slog.Logger
}

// Run advertises on opts.Interface until ctx ends.
func Run(ctx context.Context, opts Options) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Interval == 0 {
		opts.Interval = defaultInterval
	}
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return fmt.Errorf("ra: %w", err)
	}
	if opts.Prefixes == nil {
		opts.Prefixes = func() []netip.Prefix { return InterfacePrefixes(opts.Interface) }
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), opts.Interface) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("ra: listen on %s: %w", opts.Interface, err)
	}
	defer c.Close()
	p := ipv6.NewPacketConn(c)
	var filter ipv6.ICMPFilter
	filter.SetAll(true)
	filter.Accept(ipv6.ICMPTypeRouterSolicitation)
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2")}
	for _, err := range []error{
		p.SetICMPFilter(&filter),
		p.SetMulticastInterface(ifi),
		p.SetMulticastHopLimit(255), // RFC 4861: hosts drop ND with any other hop limit
		p.SetHopLimit(255),
		p.SetMulticastLoopback(false),
		p.JoinGroup(ifi, allRouters),
		p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true),
	} {
		if err != nil {
			return fmt.Errorf("ra: socket on %s: %w", opts.Interface, err)
		}
	}

	solicited := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, cm, _, err := p.ReadFrom(buf)
			if err != nil {
				return // closed when Run returns
			}
			if cm != nil && cm.HopLimit == 255 && isSolicitation(buf[:n]) {
				select {
				case solicited <- struct{}{}:
				default:
				}
			}
		}
	}()

	allNodes := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: opts.Interface}
	send := func() {
		a := advert(ifi, opts.Prefixes(), opts.RDNSS, opts.MTU)
		if a == nil {
			return // no prefix yet: the network service has not put the ULA up
		}
		if _, err := p.WriteTo(a.Marshal(), &ipv6.ControlMessage{IfIndex: ifi.Index, HopLimit: 255}, allNodes); err != nil {
			// The link-local address is tentative for a moment after
			// link up; the next tick retries.
			opts.Log.Debug("ra: send", "if", opts.Interface, "err", err)
		}
	}
	opts.Log.Info("router advertisements", "if", opts.Interface)
	var last time.Time
	sent := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-solicited:
			if wait := minDelay - time.Since(last); wait > 0 {
				timer.Reset(wait)
				continue
			}
		case <-timer.C:
		}
		send()
		last = time.Now()
		sent++
		next := initialInterval
		if sent >= initialAdverts {
			// Randomised between 3/4 and 1 of the interval, so adverts of
			// several routers do not synchronise.
			next = opts.Interval*3/4 + rand.N(opts.Interval/4+1)
		}
		timer.Reset(next)
	}
}

// advert builds the RA for prefixes; nil when there is none.
func advert(ifi *net.Interface, prefixes []netip.Prefix, rdnss []netip.Addr, mtu int) *Advert {
	if len(prefixes) == 0 {
		return nil
	}
	a := &Advert{HopLimit: 64, SourceLinkAddr: ifi.HardwareAddr, MTU: uint32(mtu)}
	for _, p := range prefixes {
		a.Prefixes = append(a.Prefixes, Prefix{Prefix: p.Masked(), OnLink: true, Autonomous: true, Valid: validLifetime, Preferred: preferLifetime})
	}
	if len(rdnss) > 0 {
		a.RDNSS, a.RDNSSLifetime = rdnss, 3*defaultInterval
	}
	return a
}

// InterfacePrefixes returns the /64s of name's global and unique-local
// IPv6 addresses.
func InterfacePrefixes(name string) []netip.Prefix {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if ones, _ := ipn.Mask.Size(); !ok || !ip.Is6() || ip.Is4In6() || ip.IsLinkLocalUnicast() || ones != 64 {
			continue
		}
		out = append(out, netip.PrefixFrom(ip, 64).Masked())
	}
	return out
}
