package store

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store/pgtest"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// backends opens stores on one database: each call to open is a new
// connection pool, as a separate process would have.
// The PostgreSQL server is started once, on first use, and stopped when
// outer (the calling test) ends.
func backends(outer *testing.T) map[string]func(t *testing.T) Store {
	dbfile := filepath.Join(outer.TempDir(), "fleet.db")
	var once sync.Once
	var dsn string
	return map[string]func(t *testing.T) Store{
		"sqlite": func(t *testing.T) Store {
			s, err := OpenSQLite(context.Background(), dbfile)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) Store {
			once.Do(func() { dsn = pgtest.Start(outer, pgtest.Options{}) })
			s, err := OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// TestStore runs every store test on SQLite and on one PostgreSQL server.
func TestStore(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("basics", func(t *testing.T) { testBasics(t, open) })
			t.Run("no double open", func(t *testing.T) { testNoDoubleOpen(t, open) })
		})
	}
}

func testBasics(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	s := open(t)
	var devs []Device
	for i := range 3 {
		devs = append(devs, Device{ID: fmt.Sprintf("dev-%d", i), Board: "qemu", Group: "g", Key: make(ed25519.PublicKey, 32)})
	}
	devs[2].Board = "apu"
	if err := s.Enroll(ctx, devs...); err != nil {
		t.Fatal(err)
	}
	got, err := s.Devices(ctx, "qemu")
	if err != nil || len(got) != 2 || got[0].ID != "dev-0" {
		t.Fatalf("devices of qemu: %v %+v", err, got)
	}
	if _, err := s.Device(ctx, "nope"); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("unknown device: %v", err)
	}
	rep := func(dev string, seq uint64, o report.Outcome) report.Report {
		return report.Report{Device: dev, Seq: seq, To: "2.0", From: "1.0", Outcome: o}
	}
	now := time.Now()
	for _, r := range []report.Report{rep("dev-0", 1, report.RolledBack), rep("dev-0", 2, report.Committed), rep("dev-1", 5, report.RolledBack)} {
		if err := s.AddReport(ctx, r, []byte("{}"), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddReport(ctx, rep("dev-1", 5, report.Committed), nil, now); !errors.Is(err, ErrReplay) {
		t.Errorf("replayed seq: %v", err)
	}
	if err := s.AddReport(ctx, rep("ghost", 1, report.Committed), nil, now); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("report from an unenrolled device: %v", err)
	}
	oc, err := s.Outcomes(ctx, "2.0")
	if err != nil || len(oc) != 2 || oc["dev-0"] != report.Committed || oc["dev-1"] != report.RolledBack {
		t.Errorf("outcomes: %v %v", err, oc)
	}
	if n, err := s.ReportCount(ctx); err != nil || n != 3 {
		t.Errorf("report count %d %v; want 3", n, err)
	}
	if _, ok, err := s.Rollout(ctx, "2.0"); ok || err != nil {
		t.Errorf("rollout before any: %v %v", ok, err)
	}
	st, err := s.UpdateRollout(ctx, "2.0", now, func(cur rollout.State) (rollout.State, string, error) {
		return rollout.State{Phase: rollout.Running, Open: 1, OpenedAt: now.UTC().Truncate(time.Second)}, "started", nil
	})
	if err != nil || st.Phase != rollout.Running {
		t.Fatal(err, st)
	}
	// An error from fn leaves the state as it was.
	_, err = s.UpdateRollout(ctx, "2.0", now, func(cur rollout.State) (rollout.State, string, error) {
		return rollout.State{Phase: rollout.Aborted}, "x", errors.New("publish failed")
	})
	if back, _, _ := s.Rollout(ctx, "2.0"); err == nil || back != st {
		t.Errorf("after a failed update: %v %+v; want %+v", err, back, st)
	}
	ev, err := s.Events(ctx, "2.0")
	if err != nil || len(ev) != 1 || ev[0].Note != "started" || ev[0].State != st {
		t.Errorf("events %v %+v", err, ev)
	}
}

// testNoDoubleOpen: several controllers (each its own store connection, as
// separate processes would be) race to open the next wave of one rollout;
// exactly one does.
func testNoDoubleOpen(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	const workers = 6
	stores := make([]Store, workers)
	for i := range stores {
		stores[i] = open(t)
	}
	plan := rollout.DefaultPlan(nil, time.Hour)
	start := time.Unix(1e9, 0).UTC()
	if _, err := stores[0].UpdateRollout(ctx, "3.0", start, func(rollout.State) (rollout.State, string, error) {
		return rollout.State{Phase: rollout.Running, Open: 1, OpenedAt: start}, "started", nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := 0
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateRollout(ctx, "3.0", start, func(cur rollout.State) (rollout.State, string, error) {
				// Every controller sees the first wave soaked.
				next := plan.Gate(cur, []rollout.WaveStats{{Eligible: 1, Updated: 1}}, start.Add(time.Hour+time.Duration(i)*time.Second))
				time.Sleep(20 * time.Millisecond) // publishing takes a while
				if next.Open == cur.Open {
					return cur, "", nil // nothing due: nothing recorded
				}
				mu.Lock()
				opened++
				mu.Unlock()
				return next, fmt.Sprintf("controller %d opened wave %d", i, next.Open), nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st, _, _ := stores[0].Rollout(ctx, "3.0")
	ev, _ := stores[0].Events(ctx, "3.0")
	if opened != 1 || st.Open != 2 || len(ev) != 2 {
		t.Errorf("%d controllers opened a wave; state %+v; %d events; want 1, 2 waves open, 2 events", opened, st, len(ev))
	}
}
