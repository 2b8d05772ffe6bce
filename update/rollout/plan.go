// Package rollout is the pure logic of a staged rollout: the plan a release
// is published with (a canary list, then cumulative percentage waves with soak
// times and health thresholds), the plan's state (which waves are open, and
// whether the rollout runs, is paused, halted or aborted), the cohort a device
// computes for itself, the check-in decision a device takes from the signed
// metadata, and the gate a controller applies to the fleet's reports.
//
// Nothing here does I/O: the repository (update/repo) signs plans and states
// into the targets metadata, the fleet controller (update/fleet) feeds the
// gate with counts from its report store, and a device feeds Decide with the
// metadata it verified. So every rule of a rollout is tested here, in tables.
package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Wave is one step of a plan. The first wave may be a canary: an explicit
// device list. Every other wave is a cumulative share of the fleet: a wave of
// 10 follows one of 1 and adds the next 9% of cohort positions.
type Wave struct {
	Name    string   `json:"name"`
	Devices []string `json:"devices,omitempty"` // canary wave: the device ids
	Percent float64  `json:"percent,omitempty"` // percentage wave: cumulative share, (0, 100]
	// Soak is how long the wave stays the newest open wave before the
	// controller may open the next one.
	Soak Duration `json:"soak"`
	// MaxFailure is the fraction of the wave's devices whose update may fail
	// (roll back or not install) before the controller halts the rollout.
	// Counted against all of the wave's devices, as hawkBit's error
	// threshold is, so one early failure does not read as 100%.
	MaxFailure float64 `json:"max_failure"`
	// MinSuccess is the fraction of the wave's devices that must have
	// committed the release before the next wave opens.
	MinSuccess float64 `json:"min_success,omitempty"`
}

// IsCanary reports whether the wave is an explicit device list.
func (w Wave) IsCanary() bool { return len(w.Devices) > 0 }

// Plan is the rollout plan of one release.
type Plan struct {
	Waves []Wave `json:"waves"`
}

// DefaultPlan is canary → 1% → 10% → 50% → 100% with the given soak per wave
// and a 5% failure threshold.
func DefaultPlan(canary []string, soak time.Duration) Plan {
	var p Plan
	if len(canary) > 0 {
		p.Waves = append(p.Waves, Wave{Name: "canary", Devices: slices.Clone(canary), Soak: Duration(soak), MaxFailure: 0.05})
	}
	for _, pc := range []float64{1, 10, 50, 100} {
		p.Waves = append(p.Waves, Wave{Name: fmt.Sprintf("%g%%", pc), Percent: pc, Soak: Duration(soak), MaxFailure: 0.05})
	}
	return p
}

// Validate checks the plan's shape; errors name the wave and the field.
func (p Plan) Validate() error {
	if len(p.Waves) == 0 {
		return fmt.Errorf("plan: field \"waves\": empty; expected at least one wave ending at 100%%")
	}
	last := 0.0
	names := map[string]bool{}
	for i, w := range p.Waves {
		where := fmt.Sprintf("plan: waves[%d] (%q)", i, w.Name)
		switch {
		case w.Name == "":
			return fmt.Errorf("plan: waves[%d]: field \"name\": missing", i)
		case names[w.Name]:
			return fmt.Errorf("%s: field \"name\": duplicate", where)
		case w.IsCanary() && i != 0:
			return fmt.Errorf("%s: field \"devices\": only the first wave may be a canary list", where)
		case w.IsCanary() && w.Percent != 0:
			return fmt.Errorf("%s: a canary wave has devices and no percent", where)
		case !w.IsCanary() && (w.Percent <= last || w.Percent > 100):
			return fmt.Errorf("%s: field \"percent\": is %g; expected more than %g and at most 100 (percentages are cumulative)", where, w.Percent, last)
		case w.Soak < 0:
			return fmt.Errorf("%s: field \"soak\": negative", where)
		case w.MaxFailure < 0 || w.MaxFailure > 1:
			return fmt.Errorf("%s: field \"max_failure\": is %g; expected a fraction in [0, 1]", where, w.MaxFailure)
		case w.MinSuccess < 0 || w.MinSuccess > 1:
			return fmt.Errorf("%s: field \"min_success\": is %g; expected a fraction in [0, 1]", where, w.MinSuccess)
		}
		for _, d := range w.Devices {
			if d == "" {
				return fmt.Errorf("%s: field \"devices\": empty device id", where)
			}
		}
		names[w.Name] = true
		if !w.IsCanary() {
			last = w.Percent
		}
	}
	if last != 100 {
		return fmt.Errorf("plan: the last wave reaches %g%%; expected 100%%", last)
	}
	return nil
}

// Position is the device's cohort position for a release, in [0, 100): the
// first 8 bytes of SHA-256 over a label, the release version and the device
// id. A device computes it itself, so the repository keeps no per-device
// state, and a new release reshuffles the fleet so the same devices are not
// always first.
func Position(deviceID, version string) float64 {
	h := sha256.New()
	h.Write([]byte("pqfleet cohort v1\x00"))
	h.Write([]byte(version))
	h.Write([]byte{0})
	h.Write([]byte(deviceID))
	v := binary.BigEndian.Uint64(h.Sum(nil)[:8])
	return float64(v>>11) / (1 << 53) * 100
}

// WaveOf returns the index of the wave the device belongs to in this
// release's plan: the canary wave if it is listed there, else the first
// percentage wave that covers its position.
func (p Plan) WaveOf(deviceID, version string) int {
	pos := -1.0
	for i, w := range p.Waves {
		if w.IsCanary() {
			if slices.Contains(w.Devices, deviceID) {
				return i
			}
			continue
		}
		if pos < 0 {
			pos = Position(deviceID, version)
		}
		if pos < w.Percent {
			return i
		}
	}
	return len(p.Waves) - 1 // unreachable for a valid plan: the last wave is 100%
}

// Duration is a time.Duration that reads and writes as "24h0m0s".
type Duration time.Duration

// MarshalText writes the Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads the Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: expected Go syntax like \"24h\": %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// ParsePlan reads a plan file strictly (unknown fields are errors) and
// validates it.
func ParsePlan(name string, data []byte) (Plan, error) {
	var p Plan
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Plan{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := p.Validate(); err != nil {
		return Plan{}, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}
