package appliance

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/google/nftables"
	"github.com/pqbranch/pqbranch/services/firewall"
	"github.com/pqbranch/pqbranch/services/network"
	"github.com/pqbranch/pqbranch/services/power"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/services/watchdog"
	"golang.org/x/sys/unix"
)

// Run brings the userland up and supervises it until ctx ends or a power
// signal arrives. After a power signal it stops everything and reboots or
// powers off, and only returns if that fails.
func (a *Appliance) Run(ctx context.Context) error {
	roles, err := a.resolveNICs(ctx)
	if err != nil {
		return err
	}
	a.roles = roles
	a.log.Info("nic roles", "wan", roles.WAN, "lan", roles.LAN)

	// Fail closed from the start: the ruleset is in force before the
	// network service brings any interface up.
	if conn, err := nftables.New(); err != nil {
		a.log.Error("firewall: netlink", "err", err)
	} else if err := firewall.Apply(conn, a.firewallSpec()); err != nil {
		a.log.Error("firewall: initial apply", "err", err)
	}

	clock := newClockHolder()
	svcs := a.services(clock)
	var crash map[string]chan struct{}
	if a.opts.FaultSocket != "" {
		svcs, crash = withFaults(svcs)
	}
	a.sup = supervise.New(supervise.Options{DownGrace: 5 * time.Minute, Log: a.log.With("svc", "supervise")}, svcs...)

	supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSup()
	if crash != nil {
		go func() {
			if err := serveFaults(supCtx, a.log, a.opts.FaultSocket, crash); err != nil {
				a.log.Error("fault injection", "err", err)
			}
		}()
	}
	// Subscribe before the services start reading the config, so that no
	// new one slips between what they read and what the diff starts from.
	changes := a.store.Subscribe()
	applied := a.store.Current()
	supDone := make(chan error, 1)
	go func() { supDone <- a.sup.Run(supCtx) }()

	// A new config restarts only the services whose part of it changed.
	go func() {
		for {
			select {
			case <-supCtx.Done():
				return
			case cfg := <-changes:
				a.defaults.Store(false)
				restarted := a.applyConfig(applied, cfg)
				applied = cfg
				a.log.Info("applying new config", "restart", restarted)
			}
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, unix.SIGHUP)
	defer signal.Stop(hup)
	go a.store.Watch(supCtx, hup)

	dev := a.opts.WatchdogDevice
	if dev == nil && a.opts.Watchdog != "" {
		if dev, err = watchdog.Open(a.opts.Watchdog); err != nil {
			a.log.Error("watchdog unavailable", "err", err)
		}
	}
	if dev != nil {
		go watchdog.Pet(supCtx, a.log, dev, a.sup.Healthy, 5*time.Second)
	}

	pwr := make(chan os.Signal, 1)
	if a.opts.PowerSignals {
		signal.Notify(pwr, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2)
		defer signal.Stop(pwr)
	}
	select {
	case <-ctx.Done():
		stopSup()
		return <-supDone
	case err := <-supDone:
		return fmt.Errorf("appliance: supervisor stopped: %w", err)
	case sig := <-pwr:
		action, _ := power.FromSignal(sig)
		plan := &power.Plan{Log: a.log, Unmount: a.opts.DataMounts, Stop: func() error {
			stopSup()
			return <-supDone
		}}
		return plan.Run(action)
	}
}

// resolveNICs waits a little for NIC drivers that probe asynchronously.
func (a *Appliance) resolveNICs(ctx context.Context) (network.Roles, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		roles, err := network.Resolve(a.opts.SysClassNet, a.opts.WAN, a.opts.LAN)
		if err == nil {
			return roles, nil
		}
		if time.Now().After(deadline) {
			return network.Roles{}, fmt.Errorf("appliance: nic roles: %w", err)
		}
		select {
		case <-ctx.Done():
			return network.Roles{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
