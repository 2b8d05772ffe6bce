package sim

import (
	"context"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/fleet/store/pgtest"
	"github.com/pqbranch/pqbranch/update/rollout"
)

const ciDevices = 2000

func stores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store { return nil }, // Run opens SQLite in Dir
		"postgres": func(t *testing.T) store.Store {
			s, err := store.OpenPostgres(context.Background(), pgtest.Start(t, pgtest.Options{}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// TestGoodRelease: with no failures the release goes canary → 1% → 10% →
// 50% → 100%, and every device ends on it, on SQLite and on PostgreSQL.
func TestGoodRelease(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			res, err := Run(context.Background(), Config{Devices: ciDevices, Canary: 10, Dir: t.TempDir(), Store: open(t)})
			if err != nil {
				t.Fatal(err)
			}
			logResult(t, res)
			if res.Final.Phase != rollout.Complete || res.Committed != ciDevices || res.RolledBack != 0 {
				t.Fatalf("rollout %s; %d of %d committed, %d rolled back; want complete and all committed", res.Final, res.Committed, ciDevices, res.RolledBack)
			}
			var opened []string
			for _, e := range res.Status.Events {
				if strings.Contains(e.Note, "opened wave") {
					opened = append(opened, e.Note)
				}
			}
			if len(opened) != 4 {
				t.Errorf("controller opened %d waves; want 4 (1%%, 10%%, 50%%, 100%%): %q", len(opened), opened)
			}
			for _, w := range res.Status.Waves {
				if w.Updated != w.Eligible || w.Failed != 0 || w.Silent != 0 {
					t.Errorf("wave %+v: want every device updated", w)
				}
			}
		})
	}
}

// TestBadRelease: 30% of devices roll back. The controller halts the
// rollout by itself in the canary or the first wave, with at most 1% of the
// fleet exposed, and nobody installs after the halt.
func TestBadRelease(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			res, err := Run(context.Background(), Config{Devices: ciDevices, Canary: 10, FailFraction: 0.3, Dir: t.TempDir(), Store: open(t)})
			if err != nil {
				t.Fatal(err)
			}
			logResult(t, res)
			if res.Final.Phase != rollout.Halted {
				t.Fatalf("rollout %s; want halted", res.Final)
			}
			if res.Final.Open > 2 {
				t.Errorf("halted with %d waves open; want the canary or the first wave", res.Final.Open)
			}
			if max := ciDevices / 100; res.Exposed > max {
				t.Errorf("%d devices installed the bad release; want at most %d (1%%)", res.Exposed, max)
			}
			if !strings.Contains(res.Status.Halted, "devices failed") {
				t.Errorf("status does not say why it halted: %q", res.Status.Halted)
			}
			// Exposure is fixed at the halt: the sim ran a full soak more.
			last := res.Status.Events[len(res.Status.Events)-1]
			if last.State.Phase != rollout.Halted || !strings.Contains(last.Note, "controller halted the rollout") {
				t.Errorf("last event %+v; want the controller's halt", last)
			}
		})
	}
}

func logResult(t *testing.T, r Result) {
	t.Helper()
	t.Logf("%s after %s simulated (%s wall): exposed %d, committed %d, rolled back %d; %d check-ins, %.0f B/check-in; %d reports, %.0f reports/s",
		r.Final, r.SimTime, r.Wall.Round(1e6), r.Exposed, r.Committed, r.RolledBack, r.CheckIns, r.BytesPerCheckIn(), r.Reports, r.ReportsPerSecond())
	for _, w := range r.Status.Waves {
		t.Logf("  wave %-6s open=%-5v eligible=%4d updated=%4d failed=%3d silent=%4d", w.Name, w.Open, w.Eligible, w.Updated, w.Failed, w.Silent)
	}
	for _, e := range r.Status.Events {
		t.Logf("  %s %s", e.At.Format("Jan 02 15:04"), e.Note)
	}
}
