package config

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/pqbranch/pqbranch/services/syslog"
)

// Log is the log section: where the appliance log goes besides the console
// and the status page.
type Log struct {
	// Syslog forwards the log to a remote collector; absent: it does not.
	Syslog *Syslog `json:"syslog,omitempty"`
}

// Syslog is log.syslog, remote syslog (RFC 5424). The fields are kept as
// written; SyslogSettings has them parsed, with the defaults applied.
type Syslog struct {
	Server   string `json:"server"`             // "host" or "host:port"; port default 514
	Protocol string `json:"protocol,omitempty"` // "udp" (default) or "tcp"
	Facility string `json:"facility,omitempty"` // default "local0"
	Level    string `json:"level,omitempty"`    // least severe level sent, default "info"
}

// DefaultSyslogPort is the collector's port when log.syslog.server has none.
const DefaultSyslogPort = "514"

// syslogLevels are the names log.syslog.level takes, least severe first.
var syslogLevels = []struct {
	name  string
	level slog.Level
}{{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warning", slog.LevelWarn}, {"error", slog.LevelError}}

// syslogLevel returns the level log.syslog.level names; ok is false for a
// name not in syslogLevels (including "", which means the default).
func syslogLevel(name string) (slog.Level, bool) {
	for _, l := range syslogLevels {
		if l.name == name {
			return l.level, true
		}
	}
	return 0, false
}

// SyslogSettings is log.syslog after validation, defaults applied.
type SyslogSettings struct {
	Address  string // "host:port"
	Protocol syslog.Protocol
	Facility syslog.Facility
	Level    slog.Level
	// Source is the LAN address to send from when the collector is an
	// address inside tunnel.remote_subnets: the tunnel's policy selects on
	// it. Zero otherwise.
	Source netip.Addr
}

// SyslogSettings returns the remote syslog settings; ok is false when the
// config has none. Call it on a validated config only.
func (c *Config) SyslogSettings() (s SyslogSettings, ok bool) {
	if c.Log == nil || c.Log.Syslog == nil {
		return SyslogSettings{}, false
	}
	sc := c.Log.Syslog
	s.Address = sc.Server
	if _, _, err := net.SplitHostPort(sc.Server); err != nil {
		s.Address = net.JoinHostPort(sc.Server, DefaultSyslogPort)
	}
	s.Protocol, s.Facility, s.Level = syslog.UDP, syslog.Local0, slog.LevelInfo
	if sc.Protocol != "" {
		s.Protocol, _ = syslog.ParseProtocol(sc.Protocol)
	}
	if sc.Facility != "" {
		s.Facility, _ = syslog.ParseFacility(sc.Facility)
	}
	if l, ok := syslogLevel(sc.Level); ok {
		s.Level = l
	}
	if c.collectorBehindTunnel() {
		s.Source, _ = c.InternalSource()
	}
	return s, true
}

// collectorBehindTunnel reports whether log.syslog.server is an address
// inside tunnel.remote_subnets. (A name is resolved only when sending, so
// a collector behind the tunnel must be given by address.)
func (c *Config) collectorBehindTunnel() bool {
	host := c.Log.Syslog.Server
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	return err == nil && slices.ContainsFunc(c.RemoteSubnets(), func(p netip.Prefix) bool { return p.Contains(a) })
}

func (c *Config) validateLog(p *problems) {
	if c.Log == nil || c.Log.Syslog == nil {
		return
	}
	s := c.Log.Syslog
	switch {
	case s.Server == "":
		p.add("log.syslog.server", `expected the collector as "host" or "host:port", like "192.0.2.50:514"`)
	case !validServer(s.Server):
		p.add("log.syslog.server", `expected "host" or "host:port" (port 1..65535), got %q`, s.Server)
	case c.collectorBehindTunnel():
		if _, ok := c.InternalSource(); !ok {
			p.add("log.syslog.server", "expected a lan.addresses entry inside tunnel.local_subnets %v to send to a collector behind the tunnel from", c.Tunnel.LocalSubnets)
		}
	}
	if s.Protocol != "" {
		if _, err := syslog.ParseProtocol(s.Protocol); err != nil {
			p.add("log.syslog.protocol", `expected "udp" or "tcp", got %q`, s.Protocol)
		}
	}
	if s.Facility != "" {
		if _, err := syslog.ParseFacility(s.Facility); err != nil {
			p.add("log.syslog.facility", "expected one of %s, got %q", strings.Join(syslog.FacilityNames(), ", "), s.Facility)
		}
	}
	if s.Level != "" {
		if _, ok := syslogLevel(s.Level); !ok {
			names := make([]string, len(syslogLevels))
			for i, l := range syslogLevels {
				names[i] = l.name
			}
			p.add("log.syslog.level", "expected one of %s, got %q", strings.Join(names, ", "), s.Level)
		}
	}
}
