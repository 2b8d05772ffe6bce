package appliance

import (
	"context"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/metrics"
	"github.com/pqbranch/pqbranch/services/syslog"
)

// runSyslog is the syslog service: it sends the log to log.syslog's
// collector until ctx ends, or, with none configured, has the forwarder
// discard its copy of the log. The queue outlives a restart, so a new
// config loses no records.
func (a *Appliance) runSyslog(ctx context.Context) error {
	cfg := a.store.Current()
	s, ok := cfg.SyslogSettings()
	if !ok {
		a.syslog.Disable()
		<-ctx.Done()
		return nil
	}
	d := syslog.Destination{Protocol: s.Protocol, Address: s.Address, Facility: s.Facility, Hostname: cfg.Hostname, Level: s.Level, Source: s.Source}
	return a.syslog.Run(ctx, d, a.log.With("svc", "syslog"))
}

// syslogKey is the part of c the syslog service reads.
func syslogKey(c *config.Config) any {
	s, ok := c.SyslogSettings()
	if !ok {
		return "off"
	}
	return struct {
		Settings config.SyslogSettings
		Hostname string
	}{s, c.Hostname} // Settings.Source follows the tunnel's subnets
}

func (a *Appliance) syslogStats() metrics.SyslogStats {
	s := a.syslog.Stats()
	return metrics.SyslogStats{Sent: s.Sent, Dropped: s.Dropped, Queued: s.Queued, Connected: s.State == syslog.Connected}
}
