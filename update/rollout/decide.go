package rollout

import (
	"cmp"
	"fmt"
	"slices"
)

// Device is what a device knows of itself when it checks in.
type Device struct {
	ID, Board, Group string
	Version          string // the release it runs
	Epoch            int64  // that release's epoch: orders releases
}

// Candidate is one release as the verified targets metadata lists it.
type Candidate struct {
	Target  string // the repository's target path of the bundle
	Version string
	Board   string
	Epoch   int64
	Plan    Plan
	State   State
}

// Action is what a check-in decides.
type Action uint8

const (
	Stay    Action = iota // keep running what runs
	Install               // download and install Decision.Target
)

func (a Action) String() string {
	switch a {
	case Stay:
		return "stay"
	case Install:
		return "install"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Decision is the outcome of a check-in. Install still waits for the
// device's maintenance window: that is the agent's business.
type Decision struct {
	Action Action
	Target Candidate // with Install
	Wave   int       // the device's wave in Target's plan, with Install
	Reason string    // why, for logs and status
}

// Decide picks what the device should run from the releases of the verified
// targets metadata and the group pins. A group pinned to a version installs
// it when it is newer than what runs and otherwise stays (a pin never forces
// a downgrade). Any other device installs the newest release for its board
// that is newer than what it runs and whose rollout has the device's wave
// open; an aborted, halted or paused rollout installs nothing new.
func Decide(d Device, cands []Candidate, pins map[string]string) Decision {
	if v, ok := pins[d.Group]; ok && d.Group != "" {
		if v == d.Version {
			return Decision{Action: Stay, Reason: fmt.Sprintf("group %q is pinned to %s, which runs", d.Group, v)}
		}
		for _, c := range cands {
			if c.Version != v || c.Board != d.Board {
				continue
			}
			if c.Epoch <= d.Epoch {
				return Decision{Action: Stay, Reason: fmt.Sprintf("group %q is pinned to %s, older than %s: no forced downgrade", d.Group, v, d.Version)}
			}
			return Decision{Action: Install, Target: c, Wave: -1, Reason: fmt.Sprintf("group %q is pinned to %s", d.Group, v)}
		}
		return Decision{Action: Stay, Reason: fmt.Sprintf("group %q is pinned to %s, which the repository does not list for board %s", d.Group, v, d.Board)}
	}
	newer := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		if c.Board == d.Board && c.Epoch > d.Epoch {
			newer = append(newer, c)
		}
	}
	if len(newer) == 0 {
		return Decision{Action: Stay, Reason: fmt.Sprintf("%s is the newest release for board %s", d.Version, d.Board)}
	}
	slices.SortFunc(newer, func(a, b Candidate) int { return cmp.Compare(b.Epoch, a.Epoch) })
	var why string
	for _, c := range newer {
		w := c.Plan.WaveOf(d.ID, c.Version)
		if c.State.IsOpen(w) {
			return Decision{Action: Install, Target: c, Wave: w, Reason: fmt.Sprintf("release %s: wave %q is open", c.Version, c.Plan.Waves[w].Name)}
		}
		if why == "" {
			why = fmt.Sprintf("release %s: wave %q not open (rollout %s)", c.Version, waveName(c.Plan, w), c.State)
		}
	}
	return Decision{Action: Stay, Reason: why}
}

func waveName(p Plan, i int) string {
	if i >= 0 && i < len(p.Waves) {
		return p.Waves[i].Name
	}
	return fmt.Sprint(i)
}
