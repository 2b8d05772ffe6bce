package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/firewall"
	"github.com/pqbranch/pqbranch/services/network"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/services/timesync"
	"golang.org/x/sys/unix"
)

// services builds the supervised services, in start order. Each reads the
// config in force when it starts, so restarting one applies a new config.
func (a *Appliance) services(clock *clockHolder) []supervise.Service {
	svcs := []supervise.Service{
		{Name: "network", Critical: true, Run: func(ctx context.Context) error {
			cfg := a.store.Current()
			if a.opts.SetHostname {
				if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
					a.log.Warn("hostname", "err", err)
				}
			}
			return network.Run(ctx, cfg, a.roles, network.Options{ResolvConf: a.opts.ResolvConf, Log: a.log.With("svc", "network")})
		}},
		{Name: "time", Run: func(ctx context.Context) error {
			s := timesync.New(a.store.Current().Time.NTP, a.log.With("svc", "time"))
			clock.set(s)
			return s.Run(ctx)
		}},
		{Name: "firewall", Critical: true, Run: func(ctx context.Context) error {
			return firewall.Run(ctx, a.log.With("svc", "firewall"), a.firewallSpec(), time.Minute)
		}},
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

// reloadable are the services a new config restarts, in start order.
var reloadable = []string{"network", "time", "firewall", "tunnel", "update", "status"}

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
		Version: a.opts.Version, Board: a.opts.Board, Slot: a.opts.Slot, Boot: a.boot,
		Roles:  map[string]string{a.roles.WAN: "wan", a.roles.LAN: "lan"},
		Clock:  clock.status,
		Config: a.configState,
		Update: a.updateStatus,
		Log:    a.ring,
	}
	if a.sup != nil {
		src.Services = a.sup.States
	}
	if a.opts.Tunnel != nil {
		src.Tunnel = a.opts.Tunnel.Status
	}
	return src
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
