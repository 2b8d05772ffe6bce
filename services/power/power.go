// Package power stops the appliance cleanly: services down in reverse
// order, file systems synced, the data partition unmounted, then the reboot
// or power-off system call.
package power

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Action is what to do once everything is stopped.
type Action int

const (
	Reboot Action = iota
	Poweroff
)

func (a Action) String() string {
	if a == Poweroff {
		return "poweroff"
	}
	return "reboot"
}

// Signals that ask PID 1 for an action, as busybox's reboot and poweroff send
// them, so either tool works.
var signals = map[Action]syscall.Signal{Reboot: unix.SIGTERM, Poweroff: unix.SIGUSR2}

// FromSignal maps a signal received by PID 1 to its action.
func FromSignal(s os.Signal) (Action, bool) {
	for a, sig := range signals {
		if s == sig {
			return a, true
		}
	}
	if s == unix.SIGUSR1 { // halt: nothing to halt for, power off
		return Poweroff, true
	}
	return 0, false
}

// Plan is a shutdown; the fields are seams for tests.
type Plan struct {
	Log        *slog.Logger
	Stop       func() error // stops the services, in reverse order
	Unmount    []string     // mount points, in order
	sync       func()
	unmount    func(string) error
	remount    func(string) error
	rebootCall func(int) error
}

func (p *Plan) defaults() {
	if p.sync == nil {
		p.sync = unix.Sync
	}
	if p.unmount == nil {
		p.unmount = func(m string) error { return unix.Unmount(m, 0) }
	}
	if p.remount == nil {
		p.remount = func(m string) error { return unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_RDONLY, "") }
	}
	if p.rebootCall == nil {
		p.rebootCall = unix.Reboot
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
}

// Run carries out the plan. On success the reboot or power-off system call
// does not return; an error means the machine is still running.
func (p *Plan) Run(a Action) error {
	p.defaults()
	p.Log.Info("shutting down", "action", a)
	var errs []error
	if p.Stop != nil {
		if err := p.Stop(); err != nil {
			errs = append(errs, err) // go on: a stuck service must not block the reboot
		}
	}
	p.sync()
	for _, m := range p.Unmount {
		if err := p.unmount(m); err != nil {
			// Something still holds it open: at least make it consistent.
			if rerr := p.remount(m); rerr != nil && !errors.Is(rerr, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("power: unmount %s: %v; remount read-only: %w", m, err, rerr))
			}
		}
	}
	p.sync()
	if len(errs) > 0 {
		p.Log.Error("shutdown not clean", "err", errors.Join(errs...))
	}
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if a == Poweroff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	if err := p.rebootCall(cmd); err != nil {
		return fmt.Errorf("power: %s: %w", a, err)
	}
	return nil
}

// Applet returns the `reboot` or `poweroff` command: it asks PID 1, which
// stops everything cleanly first.
func Applet(a Action) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		if err := unix.Kill(1, signals[a]); err != nil {
			return fmt.Errorf("%s: signal init: %w", a, err)
		}
		// Give init time; the machine goes away under us.
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		return fmt.Errorf("%s: init did not act within 30s", a)
	}
}
