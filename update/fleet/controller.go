// Package fleet is the server side of staged rollouts: the controller that
// opens waves when the reports say it is safe and halts a rollout by itself
// when they say it is not, the report endpoint devices post their signed
// outcomes to, and the rollout status an operator reads.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// Controller changes rollouts: by the gate on every Tick, and by operator
// commands. Every change runs under the store's rollout lock and publishes
// the new state to the repository before the store records it, so the
// signed metadata and the store never disagree for long and two
// controllers never open the same wave twice.
type Controller struct {
	Store   store.Store
	Repo    *repo.Repo
	Signers repo.Signers // targets, snapshot and timestamp keys: online
	Now     func() time.Time
	Log     *slog.Logger
	// DeviceTTL is how long the enrolled device list is reused between
	// ticks (wall-clock time). Zero: re-read every tick.
	DeviceTTL time.Duration

	mu      sync.Mutex
	devices map[string]deviceCache // board → list
	waves   map[string]waveCache   // version → wave per device of its board's list
}

type waveCache struct {
	of   time.Time // the device list's read time
	wave []int
}

type deviceCache struct {
	list []store.Device
	read time.Time
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Publish adds a bundle to the repository with its plan, pending, and
// records the rollout in the store.
func (c *Controller) Publish(ctx context.Context, bundlePath string, rel release.Release, plan rollout.Plan) (string, error) {
	var name string
	_, err := c.Store.UpdateRollout(ctx, rel.Version, c.now(), func(cur rollout.State) (rollout.State, string, error) {
		if cur.Phase != rollout.Pending {
			return cur, "", fmt.Errorf("fleet: release %s already has a rollout (%s)", rel.Version, cur)
		}
		var err error
		name, err = c.Repo.AddBundle(bundlePath, rel, plan, c.Signers)
		return rollout.State{}, "published " + name, err
	})
	return name, err
}

// Command applies an operator's command to a release's rollout.
func (c *Controller) Command(ctx context.Context, version string, cmd rollout.Command, why string) (rollout.State, error) {
	plan, err := c.plan(version)
	if err != nil {
		return rollout.State{}, err
	}
	return c.Store.UpdateRollout(ctx, version, c.now(), func(cur rollout.State) (rollout.State, string, error) {
		next, err := plan.Apply(cur, cmd, c.now(), why)
		if err != nil {
			return cur, "", fmt.Errorf("release %s: %w", version, err)
		}
		if err := c.Repo.SetRollout(version, next, c.Signers); err != nil {
			return cur, "", err
		}
		note := fmt.Sprintf("operator: %s", cmd)
		if why != "" {
			note += ": " + why
		}
		return next, note, nil
	})
}

func (c *Controller) plan(version string) (rollout.Plan, error) {
	t, err := c.Repo.Targets()
	if err != nil {
		return rollout.Plan{}, err
	}
	_, f, err := t.Release(version)
	if err != nil {
		return rollout.Plan{}, fmt.Errorf("fleet: %w", err)
	}
	return f.Custom.Plan, nil
}

// Change is what one Tick did to one rollout.
type Change struct {
	Version  string
	From, To rollout.State
}

// Tick applies the gate to every running rollout, and re-signs the
// timestamp when half of its lifetime has passed.
func (c *Controller) Tick(ctx context.Context) ([]Change, error) {
	t, err := c.Repo.Targets()
	if err != nil {
		return nil, err
	}
	var changes []Change
	var errs []error
	for _, cand := range t.Candidates() {
		if cand.State.Phase != rollout.Running {
			continue
		}
		ch, err := c.gate(ctx, cand.Target, t.Targets[cand.Target])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ch != nil {
			changes = append(changes, *ch)
		}
	}
	if err := c.refresh(); err != nil {
		errs = append(errs, err)
	}
	return changes, errors.Join(errs...)
}

// refresh re-signs what is past half its lifetime: the timestamp alone, or
// targets, snapshot and timestamp together when snapshot or targets is.
func (c *Controller) refresh() error {
	targets, snapshot, timestamp, err := c.Repo.Expires()
	if err != nil {
		return err
	}
	now, e := c.now(), c.Repo.Expiry
	all := !now.Add(e.Targets/2).Before(targets) || !now.Add(e.Snapshot/2).Before(snapshot)
	if !all && now.Add(e.Timestamp/2).Before(timestamp) {
		return nil
	}
	// Under the lock: a concurrent change may be replacing what the
	// timestamp names.
	_, err = c.Store.UpdateRollout(context.Background(), "", now, func(cur rollout.State) (rollout.State, string, error) {
		if all {
			return cur, "", c.Repo.UpdateTargets(c.Signers, func(*repo.Targets) error { return nil })
		}
		return cur, "", c.Repo.RefreshTimestamp(c.Signers)
	})
	return err
}

func (c *Controller) gate(ctx context.Context, name string, f repo.TargetFile) (*Change, error) {
	version := f.Custom.Release.Version
	stats, err := c.WaveStats(ctx, f.Custom.Release.Board, version, f.Custom.Plan)
	if err != nil {
		return nil, err
	}
	var ch *Change
	_, err = c.Store.UpdateRollout(ctx, version, c.now(), func(cur rollout.State) (rollout.State, string, error) {
		// cur, not the metadata's state: another controller may have
		// moved the rollout since we read the targets.
		next := f.Custom.Plan.Gate(cur, stats, c.now())
		if next == cur {
			return cur, "", nil
		}
		if err := c.Repo.SetRollout(version, next, c.Signers); err != nil {
			return cur, "", err
		}
		ch = &Change{Version: version, From: cur, To: next}
		note := describe(f.Custom.Plan, cur, next)
		c.log().Info("rollout changed", "release", version, "from", cur.String(), "to", next.String(), "why", note)
		return next, note, nil
	})
	return ch, err
}

func describe(p rollout.Plan, from, to rollout.State) string {
	switch {
	case to.Phase == rollout.Halted:
		return "controller halted the rollout: " + to.Reason
	case to.Phase == rollout.Complete:
		return "every wave open and soaked"
	case to.Open > from.Open:
		return fmt.Sprintf("controller opened wave %q: wave %q soaked under its failure threshold", p.Waves[to.Open-1].Name, p.Waves[from.Open-1].Name)
	}
	return to.String()
}

// WaveStats counts, per wave of the plan, the enrolled devices of the
// board (less pinned groups) and their reported outcomes for version.
func (c *Controller) WaveStats(ctx context.Context, board, version string, plan rollout.Plan) ([]rollout.WaveStats, error) {
	devs, waves, err := c.assignment(ctx, board, version, plan)
	if err != nil {
		return nil, err
	}
	outcomes, err := c.Store.Outcomes(ctx, version)
	if err != nil {
		return nil, err
	}
	t, err := c.Repo.Targets()
	if err != nil {
		return nil, err
	}
	stats := make([]rollout.WaveStats, len(plan.Waves))
	for i, d := range devs {
		if _, pinned := t.Custom.Pins[d.Group]; pinned && d.Group != "" {
			continue
		}
		st := &stats[waves[i]]
		st.Eligible++
		switch o := outcomes[d.ID]; {
		case o == report.Committed:
			st.Updated++
		case o.IsFailure():
			st.Failed++
		}
	}
	return stats, nil
}

// assignment returns the board's devices and each one's wave, cached: a
// cohort is a hash per device, and the list changes only on enrollment.
func (c *Controller) assignment(ctx context.Context, board, version string, plan rollout.Plan) ([]store.Device, []int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.devices == nil {
		c.devices, c.waves = map[string]deviceCache{}, map[string]waveCache{}
	}
	dc, ok := c.devices[board]
	if !ok || time.Since(dc.read) >= c.DeviceTTL {
		list, err := c.Store.Devices(ctx, board)
		if err != nil {
			return nil, nil, err
		}
		dc = deviceCache{list: list, read: time.Now()}
		c.devices[board] = dc
	}
	w, ok := c.waves[version]
	if !ok || !w.of.Equal(dc.read) {
		w = waveCache{of: dc.read, wave: make([]int, len(dc.list))}
		for i, d := range dc.list {
			w.wave[i] = plan.WaveOf(d.ID, version)
		}
		c.waves[version] = w
	}
	return dc.list, w.wave, nil
}
