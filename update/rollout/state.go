package rollout

import (
	"errors"
	"fmt"
	"time"
)

// Phase is where a rollout is. Only a Running or Complete rollout lets a
// device in an open wave start an update.
type Phase uint8

const (
	Pending  Phase = iota // published, no wave open yet
	Running               // open waves update; the controller gates the next
	Paused                // an operator stopped new updates; resume continues
	Halted                // the controller stopped it: a wave failed too often
	Aborted               // stopped for good; devices keep what they run
	Complete              // every wave open and soaked
)

var phaseNames = [...]string{"pending", "running", "paused", "halted", "aborted", "complete"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// MarshalText writes the phase's name.
func (p Phase) MarshalText() ([]byte, error) {
	if int(p) >= len(phaseNames) {
		return nil, fmt.Errorf("rollout: unknown phase %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads a phase's name.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, n := range phaseNames {
		if n == string(b) {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("rollout: phase %q: expected one of %v", b, phaseNames)
}

// State is the signed state of one release's rollout.
type State struct {
	Phase Phase `json:"phase"`
	// Open is the number of open waves: waves [0, Open) may update.
	Open int `json:"open"`
	// OpenedAt is when wave Open-1 opened: its soak counts from here.
	OpenedAt time.Time `json:"opened_at,omitzero"`
	// Reason says why the rollout is paused, halted or aborted.
	Reason string `json:"reason,omitempty"`
}

func (s State) String() string {
	out := fmt.Sprintf("%s, %d wave(s) open", s.Phase, s.Open)
	if s.Reason != "" {
		out += ": " + s.Reason
	}
	return out
}

// Open reports whether devices of wave i may start an update now.
func (s State) IsOpen(wave int) bool {
	return (s.Phase == Running || s.Phase == Complete) && wave < s.Open
}

// Command is an operator's action on a rollout.
type Command uint8

const (
	Start   Command = iota + 1 // open the first wave
	Advance                    // open the next wave now, whatever the gate says
	Pause                      // stop new updates
	Resume                     // continue a paused or halted rollout
	Abort                      // stop for good; no forced downgrade
)

var commandNames = map[Command]string{Start: "start", Advance: "advance", Pause: "pause", Resume: "resume", Abort: "abort"}

func (c Command) String() string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return fmt.Sprintf("command(%d)", uint8(c))
}

// ParseCommand reads a command's name.
func ParseCommand(s string) (Command, error) {
	for c, n := range commandNames {
		if n == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("rollout: command %q: expected start, advance, pause, resume or abort", s)
}

// ErrTransition is returned for a command the rollout's phase does not allow.
var ErrTransition = errors.New("command not allowed in this phase")

// Apply returns the state after an operator's command. why is recorded as
// the reason where the command sets one (pause, abort).
func (p Plan) Apply(s State, c Command, now time.Time, why string) (State, error) {
	bad := func() (State, error) {
		return s, fmt.Errorf("rollout: cannot %s: it is %s: %w", c, s.Phase, ErrTransition)
	}
	switch c {
	case Start:
		if s.Phase != Pending {
			return bad()
		}
		return State{Phase: Running, Open: 1, OpenedAt: now}, nil
	case Advance:
		if s.Phase != Running && s.Phase != Paused && s.Phase != Pending {
			return bad()
		}
		if s.Open >= len(p.Waves) {
			return s, fmt.Errorf("rollout: cannot advance: all %d waves are open: %w", len(p.Waves), ErrTransition)
		}
		return State{Phase: Running, Open: s.Open + 1, OpenedAt: now, Reason: why}, nil
	case Pause:
		if s.Phase != Running {
			return bad()
		}
		return State{Phase: Paused, Open: s.Open, OpenedAt: s.OpenedAt, Reason: orDefault(why, "paused by operator")}, nil
	case Resume:
		if s.Phase != Paused && s.Phase != Halted {
			return bad()
		}
		// The soak restarts: the wave has had no updates while stopped.
		return State{Phase: Running, Open: s.Open, OpenedAt: now}, nil
	case Abort:
		if s.Phase == Aborted {
			return bad()
		}
		return State{Phase: Aborted, Open: s.Open, OpenedAt: s.OpenedAt, Reason: orDefault(why, "aborted by operator")}, nil
	}
	return s, fmt.Errorf("rollout: unknown command %d", c)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// WaveStats is what the report store knows of one wave's devices.
type WaveStats struct {
	Eligible int // devices in the wave (enrolled, of the release's board, not pinned)
	Updated  int // committed the release
	Failed   int // rolled back or failed to install
}

// Silent is the number of the wave's devices that have not reported.
func (w WaveStats) Silent() int { return max(0, w.Eligible-w.Updated-w.Failed) }

// Gate is the controller's rule: the state after looking at the open waves'
// reports at now. It halts a running rollout as soon as any open wave's
// failures exceed its threshold, and opens the next wave only when the
// newest open wave has soaked, is under its threshold and has enough
// successes. It returns the state unchanged when nothing is due.
func (p Plan) Gate(s State, stats []WaveStats, now time.Time) State {
	if s.Phase != Running {
		return s
	}
	for i := 0; i < s.Open && i < len(stats) && i < len(p.Waves); i++ {
		w, st := p.Waves[i], stats[i]
		if st.Eligible > 0 && float64(st.Failed) > w.MaxFailure*float64(st.Eligible) {
			return State{Phase: Halted, Open: s.Open, OpenedAt: s.OpenedAt, Reason: fmt.Sprintf(
				"wave %q: %d of %d devices failed (%.1f%%; at most %.1f%% allowed)",
				w.Name, st.Failed, st.Eligible, 100*float64(st.Failed)/float64(st.Eligible), 100*w.MaxFailure)}
		}
	}
	cur := s.Open - 1
	if cur < 0 || cur >= len(p.Waves) {
		return s
	}
	w := p.Waves[cur]
	if now.Sub(s.OpenedAt) < w.Soak.Std() {
		return s
	}
	if cur < len(stats) && stats[cur].Eligible > 0 &&
		float64(stats[cur].Updated) < w.MinSuccess*float64(stats[cur].Eligible) {
		return s
	}
	if s.Open == len(p.Waves) {
		return State{Phase: Complete, Open: s.Open, OpenedAt: s.OpenedAt}
	}
	return State{Phase: Running, Open: s.Open + 1, OpenedAt: now}
}
