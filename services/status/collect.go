package status

import (
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/services/logring"
	"github.com/pqbranch/pqbranch/services/provision"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/services/timesync"
)

// Sources are where the report comes from. Each func may be nil: that part
// of the report stays empty, so status works on a half-started appliance.
type Sources struct {
	Version, Board, Slot string
	// DevKey: the running firmware was signed with a development key.
	DevKey   bool
	Boot     time.Time
	Roles    map[string]string // interface name -> role
	Tunnel   func() TunnelStatus
	Services func() []supervise.State
	Clock    func() timesync.Status
	Update   func() UpdateStatus
	Config   func() ConfigState
	Log      *logring.Ring
	LogLines int // how many recent lines; default 50
	// Metrics, if set, is served at /metrics (Prometheus text format),
	// on the same LAN-only endpoint as the report.
	Metrics http.Handler
	// Provision is what the boot's USB stick check did; nil: none ran.
	Provision *provision.Result
}

// Collect builds a report now.
func (s *Sources) Collect() Report {
	now := time.Now()
	r := Report{Version: s.Version, Board: s.Board, Slot: s.Slot, DevKey: s.DevKey, Time: now, Uptime: Duration(now.Sub(s.Boot))}
	r.Hostname, _ = os.Hostname()
	r.Interfaces = interfaces(s.Roles)
	r.Tunnel = TunnelStatus{State: TunnelNotConfigured}
	if s.Tunnel != nil {
		r.Tunnel = s.Tunnel()
	}
	if s.Services != nil {
		r.Services = s.Services()
	}
	if s.Clock != nil {
		r.Clock = s.Clock()
	}
	if s.Update != nil {
		r.Update = s.Update()
	}
	if s.Config != nil {
		r.Config = s.Config()
	}
	r.Provision = s.Provision
	if s.Log != nil {
		n := s.LogLines
		if n == 0 {
			n = 50
		}
		r.Log = s.Log.Recent(n)
	}
	return r
}

// hexRun is an SPI, a message ID in hex or a key fingerprint in a message.
var hexRun = regexp.MustCompile(`\b[0-9a-fA-F]{8,}\b`)

// Summary is the report for the LAN: the tunnel's state, algorithms and
// counters without its SPIs, and no log lines, which carry SPIs and
// message IDs. Hex runs in the tunnel's last error are masked too.
func (r Report) Summary() Report {
	r.Tunnel.SPIs = nil
	r.Tunnel.LastError = hexRun.ReplaceAllString(r.Tunnel.LastError, "…")
	r.Log = nil
	return r
}

func interfaces(roles map[string]string) []Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	out := make([]Interface, 0, len(ifs))
	for _, ifi := range ifs {
		it := Interface{Name: ifi.Name, Role: roles[ifi.Name], Up: ifi.Flags&net.FlagUp != 0, MAC: ifi.HardwareAddr.String(), MTU: ifi.MTU, Addresses: []string{}}
		if addrs, err := ifi.Addrs(); err == nil {
			for _, a := range addrs {
				if s := a.String(); !strings.HasPrefix(s, "fe80:") {
					it.Addresses = append(it.Addresses, s)
				}
			}
		}
		out = append(out, it)
	}
	return out
}
