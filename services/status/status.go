// Package status reports the appliance's state: a read-only JSON endpoint on
// the LAN side and the `status` command that prints it.
package status

import (
	"time"

	"github.com/pqbranch/pqbranch/services/logring"
	"github.com/pqbranch/pqbranch/services/provision"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/services/timesync"
	"github.com/pqbranch/pqbranch/update/agent"
)

// Report is the whole status document.
type Report struct {
	Version string `json:"version"`
	Board   string `json:"board"`
	Slot    string `json:"slot"`
	// DevKey says the firmware was signed with a development key: fine in
	// a lab, never in the field.
	DevKey     bool              `json:"dev_key,omitempty"`
	Hostname   string            `json:"hostname"`
	Time       time.Time         `json:"time"`
	Uptime     Duration          `json:"uptime"`
	Interfaces []Interface       `json:"interfaces"`
	Tunnel     TunnelStatus      `json:"tunnel"`
	Services   []supervise.State `json:"services"`
	Clock      timesync.Status   `json:"clock"`
	Update     UpdateStatus      `json:"update"`
	Config     ConfigState       `json:"config"`
	Log        []logring.Entry   `json:"log"`

	// Provision is the boot's USB provisioning stick check (installed,
	// ignored-not-newer, rejected with the validator's errors, no-stick).
	Provision *provision.Result `json:"provision,omitempty"`
}

// Interface is one network interface and its addresses.
type Interface struct {
	Name      string   `json:"name"`
	Role      string   `json:"role,omitempty"`
	Up        bool     `json:"up"`
	MAC       string   `json:"mac,omitempty"`
	MTU       int      `json:"mtu"`
	Addresses []string `json:"addresses"`
}

// TunnelStatus.State values. The first three are the IKE session's own
// (ike.State's String; status does not link the IKE stack); the appliance
// adds TunnelNotConfigured when the config has no tunnel.
const (
	TunnelDown          = "down"
	TunnelConnecting    = "connecting"
	TunnelEstablished   = "established"
	TunnelNotConfigured = "not configured"
)

// TunnelStates are all TunnelStatus.State values, for exporters that
// publish one series per state.
var TunnelStates = []string{TunnelDown, TunnelConnecting, TunnelEstablished, TunnelNotConfigured}

// TunnelStatus is what the tunnel service reports about the IPsec tunnel.
type TunnelStatus struct {
	State   string      `json:"state"` // one of TunnelStates
	KE      string      `json:"ke,omitempty"`
	AddKE   []string    `json:"addke,omitempty"`
	Encr    string      `json:"encr,omitempty"`
	PRF     string      `json:"prf,omitempty"`
	ESP     string      `json:"esp,omitempty"`
	SPIs    []string    `json:"spis,omitempty"`
	Bytes   TunnelBytes `json:"bytes"`
	Packets TunnelBytes `json:"packets"`
	// Established is when the IKE SA in force was set up; zero when down.
	Established time.Time `json:"established,omitzero"`
	IKERekeys   int       `json:"ike_rekeys,omitempty"`
	ChildRekeys int       `json:"child_rekeys,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
}

// TunnelBytes counts ESP payload bytes (or packets) in and out.
type TunnelBytes struct {
	In  uint64 `json:"in"`
	Out uint64 `json:"out"`
}

// UpdateStatus is the A/B update agent's state and the firmware's boot
// entries as it steers them.
type UpdateStatus struct {
	agent.Status
	// BootOrder lists the slots in the firmware's BootOrder: the first is
	// the committed one. BootNext is the slot armed for one trial boot.
	BootOrder []string `json:"boot_order,omitempty"`
	BootNext  string   `json:"boot_next,omitempty"`
	// Unavailable says why no agent runs (no slots, no UEFI variables).
	Unavailable string `json:"unavailable,omitempty"`
}

// ConfigState says which config is in force and why a newer one is not.
type ConfigState struct {
	File     string   `json:"file"`
	Loaded   bool     `json:"loaded"`
	Errors   []string `json:"errors,omitempty"`
	Defaults bool     `json:"defaults,omitempty"` // running the board's default config
}

// Duration marshals as a Go duration string ("3h2m1s"), for people.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).Round(time.Second).String()), nil
}

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}
