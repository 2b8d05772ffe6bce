package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/firewall"
	"github.com/pqbranch/pqbranch/services/metrics"
	"github.com/pqbranch/pqbranch/services/network"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/services/timesync"
	"golang.org/x/sys/unix"
)

// services builds the supervised services, in start order. Each reads the
// config in force when it starts, so restarting one applies a new config.
// A service switched off in the config idles rather than exits, so that the
// list is fixed and a reload that switches it on restarts it.
func (a *Appliance) services(clock *clockHolder) []supervise.Service {
	svcs := []supervise.Service{
		// First, so that it is stopped last and the collector sees the
		// other services stop.
		{Name: "syslog", Run: a.runSyslog},
		{Name: "network", Critical: true, Run: func(ctx context.Context) error {
			cfg := a.store.Current()
			if a.opts.SetHostname {
				if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
					a.log.Warn("hostname", "err", err)
				}
			}
			return network.Run(ctx, cfg, a.roles, network.Options{
				ResolvConf: a.opts.ResolvConf, Log: a.log.With("svc", "network"),
				OnWANDNS:      func(s []netip.Addr) { a.wanDNS.Store(&s) },
				DNS:           func() config.DNS { return a.store.Current().DNS },
				ResolvRefresh: a.resolvRefresh,
			})
		}},
		{Name: "time", Run: func(ctx context.Context) error {
			s := timesync.New(a.store.Current().Time.NTP, a.log.With("svc", "time"))
			clock.set(s)
			return s.Run(ctx)
		}},
		{Name: "firewall", Critical: true, Run: func(ctx context.Context) error {
			return firewall.Run(ctx, a.log.With("svc", "firewall"), a.firewallSpec(), time.Minute)
		}},
		{Name: "dhcp", Run: a.runDHCP},
		{Name: "dns", Run: a.runDNS},
		{Name: "ra", Run: a.runRA},
		{Name: "tunnel", Run: func(ctx context.Context) error {
			cfg := a.store.Current().Tunnel
			if cfg == nil || a.opts.Tunnel == nil {
				if cfg != nil {
					a.log.Error("tunnel configured but no IKE implementation is linked in")
				}
				<-ctx.Done()
				return nil
			}
			// Certificates and SA lifetimes want the right time, but the
			// tunnel must come up even when no time server answers.
			if !clock.waitSynced(ctx, 15*time.Second) {
				a.log.Warn("tunnel: starting without synchronised time")
			}
			return a.opts.Tunnel.Run(ctx, cfg, a.log.With("svc", "tunnel"))
		}},
		{Name: "status", Run: func(ctx context.Context) error {
			return status.Serve(ctx, a.log.With("svc", "status"), a.statusSources(clock), a.statusAddrs()...)
		}},
	}
	// A box without A/B slots and UEFI variables has no update service
	// (status says why) rather than one that fails for ever.
	if u := a.opts.Updates; u != nil && u.Unavailable == nil {
		svcs = slices.Insert(svcs, len(svcs)-1, supervise.Service{Name: "update", Run: a.runUpdate})
	}
	return svcs
}

// reloadable are the services a new config may restart, in start order.
var reloadable = []string{"syslog", "network", "time", "firewall", "dhcp", "dns", "ra", "tunnel", "update", "status"}

// dependsOn is the part of c that service name reads when it starts. A new
// config restarts a service only when its part changed: a reload must not
// cut the branch off by bouncing links, addresses, leases or the tunnel
// for an unrelated edit.
func (a *Appliance) dependsOn(name string, c *config.Config) any {
	switch name {
	case "network":
		// dns.servers and dns.search are read at each resolv.conf write
		// (Options.DNS); a change of them only refreshes the file.
		return struct {
			Hostname string
			MTU      int
			WAN      config.WAN
			LAN      []netip.Prefix
			ULA      bool
			Routes   []config.Route
		}{c.Hostname, c.LinkMTU(), c.WAN, c.LAN.Addresses, c.LAN.ULA, c.Routes}
	case "time":
		return c.Time
	case "syslog":
		return syslogKey(c)
	case "firewall":
		return firewall.SpecFrom(c, a.roles.WAN, a.roles.LAN)
	case "tunnel":
		return c.Tunnel
	case "update":
		u := c.Update
		u.Parsed = config.ParsedUpdate{} // derived, and a CertPool does not compare
		return u
	case "status":
		return struct {
			Port int
			LAN  []netip.Prefix
		}{c.Firewall.Port(), c.LAN.Addresses}
	case "dhcp":
		if !c.Firewall.LAN.DHCP {
			return "off"
		}
		// What runDHCP hands out: resolvers only when the appliance is
		// not the resolver itself, and the first search domain.
		key := struct {
			LAN     config.LAN
			DNS     []netip.Addr
			Domain  string
			Forward bool
		}{LAN: c.LAN, Forward: c.Firewall.LAN.DNS}
		if !c.Firewall.LAN.DNS {
			key.DNS = c.DNS.Servers
		}
		if len(c.DNS.Search) > 0 {
			key.Domain = c.DNS.Search[0]
		}
		return key
	case "dns":
		// The upstream resolvers are read at each query, so a change of
		// dns.servers needs no restart.
		if !c.Firewall.LAN.DNS {
			return "off"
		}
		src, _ := c.InternalSource()
		return struct {
			LAN      []netip.Prefix
			ULA      bool
			Internal []config.InternalDomain
			Source   netip.Addr
		}{c.LAN.Addresses, c.LAN.ULA, c.DNS.Internal, src}
	case "ra":
		if !c.LAN.ULA {
			return "off"
		}
		return struct {
			ULA, DNS bool
			MTU      int
		}{c.LAN.ULA, c.Firewall.LAN.DNS, c.LinkMTU()}
	}
	return c // unknown: any change restarts it
}

// restartsFor lists the services whose part of the config differs between
// old (nil: unknown) and cfg, in start order.
func (a *Appliance) restartsFor(old, cfg *config.Config) []string {
	var restart []string
	for _, name := range reloadable {
		if old == nil || !reflect.DeepEqual(a.dependsOn(name, old), a.dependsOn(name, cfg)) {
			restart = append(restart, name)
		}
	}
	return restart
}

// applyConfig restarts the services whose part of the config changed from
// old to cfg, and has resolv.conf rewritten when the resolvers changed. It
// returns the services it restarted.
func (a *Appliance) applyConfig(old, cfg *config.Config) []string {
	restart := a.restartsFor(old, cfg)
	if old == nil || !slices.Equal(old.DNS.Servers, cfg.DNS.Servers) || !slices.Equal(old.DNS.Search, cfg.DNS.Search) {
		select {
		case a.resolvRefresh <- struct{}{}:
		default: // a refresh is pending and will read the newest config
		}
	}
	a.sup.Restart(restart...)
	return restart
}

func (a *Appliance) firewallSpec() firewall.Spec {
	return firewall.SpecFrom(a.store.Current(), a.roles.WAN, a.roles.LAN)
}

func (a *Appliance) statusAddrs() []string {
	cfg := a.store.Current()
	port := strconv.Itoa(cfg.Firewall.Port())
	addrs := []string{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(cfg.Firewall.Port())).String()}
	if lan, ok := firstV4(cfg.LAN.Addresses); ok {
		addrs = append(addrs, lan.String()+":"+port)
	}
	return addrs
}

func (a *Appliance) statusSources(clock *clockHolder) *status.Sources {
	src := &status.Sources{
		Version: a.opts.Version, Board: a.opts.Board, Slot: a.opts.Slot, DevKey: a.opts.Release.DevKey, Boot: a.boot,
		Roles:  map[string]string{a.roles.WAN: "wan", a.roles.LAN: "lan"},
		Clock:  clock.status,
		Config: a.configState,
		Update: a.updateStatus,
		Log:    a.ring,

		Provision: a.provisioned,
	}
	if a.sup != nil {
		src.Services = a.sup.States
	}
	if a.opts.Tunnel != nil {
		src.Tunnel = a.tunnelStatus
	}
	src.Metrics = metrics.Handler(metrics.Sources{Report: src.Collect, DHCP: a.dhcpStats, DNS: a.dnsStats, Syslog: a.syslogStats})
	return src
}

// tunnelStatus says "not configured" while the config in force has no
// tunnel: no session runs then, and "down" would read as an outage on the
// status page and in the metrics of every box without one.
func (a *Appliance) tunnelStatus() status.TunnelStatus {
	if c := a.store.Current(); c == nil || c.Tunnel == nil {
		return status.TunnelStatus{State: status.TunnelNotConfigured}
	}
	return a.opts.Tunnel.Status()
}

func (a *Appliance) configState() status.ConfigState {
	st := status.ConfigState{File: a.store.Path(), Loaded: a.store.Current() != nil, Defaults: a.defaults.Load()}
	var ce *config.Error
	if err := a.store.LastError(); errors.As(err, &ce) {
		for _, f := range ce.Fields {
			st.Errors = append(st.Errors, ce.File+": "+f.String())
		}
	} else if err != nil {
		st.Errors = []string{err.Error()}
	}
	return st
}

func (a *Appliance) updateStatus() status.UpdateStatus {
	var u status.UpdateStatus
	if ag := a.agent.Load(); ag != nil {
		u.Status = ag.Status()
	} else if up := a.opts.Updates; up == nil || up.Unavailable != nil {
		u.Unavailable = "no boot disk with A/B slots and UEFI variables"
		if up != nil {
			u.Unavailable = up.Unavailable.Error()
		}
	}
	if up := a.opts.Updates; up != nil && up.Order != nil {
		var err error
		if u.BootOrder, u.BootNext, err = up.Order(); err != nil {
			u.Reason += fmt.Sprintf(" (boot entries: %v)", err)
		}
	}
	return u
}
