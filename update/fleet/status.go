package fleet

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pqbranch/pqbranch/update/rollout"
)

// WaveStatus is one wave's line of a status.
type WaveStatus struct {
	Name     string  `json:"name"`
	Percent  float64 `json:"percent,omitempty"`
	Canary   int     `json:"canary,omitempty"` // devices listed, for a canary wave
	Open     bool    `json:"open"`
	Eligible int     `json:"eligible"`
	Updated  int     `json:"updated"`
	Failed   int     `json:"failed"`
	Silent   int     `json:"silent"`
}

// EventStatus is one recorded change.
type EventStatus struct {
	At    time.Time     `json:"at"`
	State rollout.State `json:"state"`
	Note  string        `json:"note"`
}

// Status is a release's rollout as an operator reads it.
type Status struct {
	Version string        `json:"version"`
	Board   string        `json:"board"`
	Target  string        `json:"target"`
	State   rollout.State `json:"state"`
	Halted  string        `json:"halted,omitempty"` // why, when halted
	Waves   []WaveStatus  `json:"waves"`
	Events  []EventStatus `json:"events"`
}

// Status reads a release's rollout: the signed state, per-wave counts and
// the change log.
func (c *Controller) Status(ctx context.Context, version string) (Status, error) {
	t, err := c.Repo.Targets()
	if err != nil {
		return Status{}, err
	}
	name, f, err := t.Release(version)
	if err != nil {
		return Status{}, fmt.Errorf("fleet: %w", err)
	}
	st := Status{Version: version, Board: f.Custom.Release.Board, Target: name, State: f.Custom.Rollout}
	if st.State.Phase == rollout.Halted {
		st.Halted = st.State.Reason
	}
	stats, err := c.WaveStats(ctx, st.Board, version, f.Custom.Plan)
	if err != nil {
		return Status{}, err
	}
	for i, w := range f.Custom.Plan.Waves {
		s := stats[i]
		st.Waves = append(st.Waves, WaveStatus{Name: w.Name, Percent: w.Percent, Canary: len(w.Devices), Open: i < st.State.Open,
			Eligible: s.Eligible, Updated: s.Updated, Failed: s.Failed, Silent: s.Silent()})
	}
	evs, err := c.Store.Events(ctx, version)
	if err != nil {
		return Status{}, err
	}
	for _, e := range evs {
		st.Events = append(st.Events, EventStatus{At: e.At, State: e.State, Note: e.Note})
	}
	return st, nil
}

// WriteText writes the status for a terminal.
func (s Status) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "release %s (%s, %s): %s\n", s.Version, s.Board, s.Target, s.State.Phase)
	if s.State.Reason != "" {
		fmt.Fprintf(w, "  why: %s\n", s.State.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "wave\topen\teligible\tupdated\tfailed\tsilent\t")
	for _, wv := range s.Waves {
		open := "no"
		if wv.Open {
			open = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", wv.Name, open, wv.Eligible, wv.Updated, wv.Failed, wv.Silent)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Events) > 0 {
		fmt.Fprintln(w, "events:")
		for _, e := range s.Events {
			fmt.Fprintf(w, "  %s  %s\n", e.At.UTC().Format(time.RFC3339), strings.TrimSpace(e.Note))
		}
	}
	return nil
}
