// Package appliance is the userland PID 1 starts after the banner: it loads
// the config, resolves the NIC roles, puts the firewall up before anything
// else, and supervises network, time, firewall, tunnel, update agent and
// status; it reloads the config on SIGHUP, pets the watchdog while
// supervision is healthy, and reboots or powers off cleanly on request.
package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/ike"
	"github.com/pqbranch/pqbranch/services/lan/dhcpd"
	"github.com/pqbranch/pqbranch/services/lan/dnsfwd"
	"github.com/pqbranch/pqbranch/services/logring"
	"github.com/pqbranch/pqbranch/services/network"
	"github.com/pqbranch/pqbranch/services/provision"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/services/syslog"
	"github.com/pqbranch/pqbranch/services/watchdog"
	"github.com/pqbranch/pqbranch/update/agent"
)

// Tunnel is the IPsec tunnel service (package ike provides it).
type Tunnel interface {
	// Run keeps the tunnel for cfg up until ctx ends.
	Run(ctx context.Context, cfg *ike.Config, log *slog.Logger) error
	Status() status.TunnelStatus
}

// Options are the appliance's inputs besides the config file.
type Options struct {
	Version, Board, Slot string
	// Release is the running firmware's release file.
	Release release.Release

	ConfigPath    string // default config.DefaultPath
	DefaultConfig []byte // the board's config, used when the file is missing
	// WAN and LAN pick the NICs, from the board file.
	WAN, LAN    network.Match
	SysClassNet string // default /sys/class/net

	// Updates wires the A/B update agent; nil: no updates on this box.
	Updates *Updates

	Watchdog string // watchdog device; empty: none
	// WatchdogDevice is the watchdog init already armed; when nil and
	// Watchdog is set, Run opens it.
	WatchdogDevice watchdog.Device
	DataMounts     []string // unmounted on shutdown, e.g. /data
	ResultFile     string   // latest update result (JSON status.UpdateResult)

	Console io.Writer // default os.Stdout
	// ResolvConf is the resolver file the network service writes.
	ResolvConf string // default /etc/resolv.conf
	// SetHostname sets the host name from the config; only PID 1 should,
	// a test would rename the machine it runs on.
	SetHostname bool
	Tunnel      Tunnel // nil until an implementation is linked in
	// PowerSignals makes the appliance act on SIGTERM (reboot) and SIGUSR2
	// (poweroff); only PID 1 should.
	PowerSignals bool
	// FaultSocket, set only in dev images, is where the `crash` applet asks
	// a service to fail (see FaultSocket). Empty: no fault injection.
	FaultSocket string
	// Provision looks for a USB provisioning stick before the config is
	// loaded; its ConfigPath and Log are set from these options. Nil: no
	// stick check (tests, hosts).
	Provision *provision.Provisioner
}

func (o *Options) defaults() {
	if o.ConfigPath == "" {
		o.ConfigPath = config.DefaultPath
	}
	if o.SysClassNet == "" {
		o.SysClassNet = "/sys/class/net"
	}
	if o.Console == nil {
		o.Console = os.Stdout
	}
}

// Appliance is the running userland.
type Appliance struct {
	opts  Options
	ring  *logring.Ring
	log   *slog.Logger
	store *config.Store
	roles network.Roles
	boot  time.Time

	defaults atomic.Bool // running the board default config, the file being unusable
	sup      *supervise.Supervisor
	agent    atomic.Pointer[agent.Agent] // the update agent while it runs

	// What the LAN services and metrics share with the network service.
	wanDNS        atomic.Pointer[[]netip.Addr] // resolvers learnt on the WAN
	resolvRefresh chan struct{}                // rewrite resolv.conf
	dhcp          atomic.Pointer[dhcpd.Server]
	dns           atomic.Pointer[dnsfwd.Forwarder]
	syslog        *syslog.Forwarder // the log's copy for log.syslog's collector

	provisioned *provision.Result // what the boot's stick check did; nil: none ran
}

// New sets up logging and loads the config. It fails only when there is no
// usable config at all: neither the file nor the board default.
func New(opts Options) (*Appliance, error) {
	opts.defaults()
	ring := logring.New(opts.Console, 1000)
	a := &Appliance{opts: opts, ring: ring, log: ring.Logger(), boot: time.Now(), resolvRefresh: make(chan struct{}, 1)}
	// Every record also goes to the remote syslog forwarder, which queues
	// it (bounded, never waiting) until its service sends or discards it.
	a.syslog = syslog.NewForwarder(syslog.Options{})
	a.log = slog.New(a.syslog.Handler(a.log.Handler()))
	checks := configChecks(opts.Release)
	a.store = config.NewStore(opts.ConfigPath, a.log, checks...)
	if opts.Provision != nil {
		// Before the first-boot default is written: a stick on a fresh box
		// installs the site's config instead, if this firmware accepts it.
		p := *opts.Provision
		p.ConfigPath, p.Default, p.Log, p.Checks = opts.ConfigPath, opts.DefaultConfig, a.log, checks
		r := p.Run(context.Background())
		a.provisioned = &r
	}
	if err := a.loadConfig(); err != nil {
		return nil, err
	}
	return a, nil
}

// loadConfig loads the file, writing the board default first if there is
// none (first boot). When the file is unusable the board default runs, and
// the file's errors stay visible on the status page.
func (a *Appliance) loadConfig() error {
	if _, err := os.Stat(a.opts.ConfigPath); os.IsNotExist(err) && len(a.opts.DefaultConfig) > 0 {
		if err := config.WriteFile(a.opts.ConfigPath, a.opts.DefaultConfig); err != nil {
			a.log.Warn("cannot store the default config", "err", err)
		} else {
			a.log.Info("first boot: wrote the board's default config", "file", a.opts.ConfigPath)
		}
	}
	if a.store.Reload() == nil {
		return nil
	}
	if len(a.opts.DefaultConfig) == 0 {
		return fmt.Errorf("appliance: no usable config: %w", a.store.LastError())
	}
	if err := a.store.Fallback("board default config", a.opts.DefaultConfig); err != nil {
		return fmt.Errorf("appliance: board default config: %w", err)
	}
	a.defaults.Store(true)
	return nil
}

// Log returns the appliance logger (console and ring).
func (a *Appliance) Log() *slog.Logger { return a.log }

func firstV4(ps []netip.Prefix) (netip.Addr, bool) {
	for _, p := range ps {
		if p.Addr().Is4() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}
