package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/update/agent"
)

// TestRejectedBundles offers one box broken or forged bundles from the
// lab's HTTPS update server in the WAN namespace: each is refused with a
// clear reason, the boot entries untouched and slot B never armed. Like
// TestUpdates and TestRollbacks it has a box of its own, so that the
// update tests run side by side on the machine's cores.
func TestRejectedBundles(t *testing.T) {
	ctx, v1 := updateTest(t, 45*time.Minute)
	v2 := buildRelease(t, "0.2.0-test", v1.Epoch+100, "")
	good, err := os.ReadFile(v2.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	l := startHealthyBox(ctx, t, v1.Version)
	for _, m := range mutants(t, v2, v1) {
		publishBytes(t, l, m.make(t, good))
		console(ctx, t, l, "update check")
		r := waitUpdate(ctx, t, l, m.name, 4*time.Minute, func(u status.UpdateStatus) bool {
			return u.State == agent.Failed && reasonHas(u, m.reason)
		})
		t.Logf("%s: %s", m.name, r.Update.Reason)
		checkBootSteady(t, r.Update, "A")
	}
}

// TestUpdates takes one box through its update life, served by the lab's
// HTTPS update server in the WAN namespace:
//
//   - A→B: the reboot waits for the maintenance window (the lab's time
//     server moves the clock into it), B boots on trial and commits;
//   - a release that refuses the installed config: the box is back on B
//     by itself (the other bad releases are TestRollbacks', on a box of
//     its own);
//   - B→A with the next good release, applied at once outside the window.
func TestUpdates(t *testing.T) {
	ctx, v1 := updateTest(t, 40*time.Minute)
	v2 := buildRelease(t, "0.2.0-test", v1.Epoch+100, "")
	rejects := buildRelease(t, "0.3.3-rejectconfig", v1.Epoch+450, release.FaultRejectConfig)
	v3 := buildRelease(t, "0.4.0-test", v1.Epoch+500, "")

	l := startHealthyBox(ctx, t, v1.Version)

	t.Run("A to B in the window", func(t *testing.T) {
		u := stage(ctx, t, l, v2)
		if u.WaitUntil.IsZero() || !strings.Contains(u.Window, "Sun 02:00-04:00") {
			t.Fatalf("staged without a planned reboot in the window: %s (window %q)", describe(u), u.Window)
		}
		wait := u.WaitUntil.UTC()
		if wait.Weekday() != time.Sunday || wait.Hour() < 2 || wait.Hour() >= 4 {
			t.Fatalf("reboot planned at %v, outside Sun 02:00-04:00", wait)
		}
		// Outside the window nothing happens.
		mark := l.VM.Mark()
		time.Sleep(15 * time.Second)
		if r, err := l.Status(ctx); err != nil || r.Update.State != agent.Staged || r.Slot != "A" {
			t.Fatalf("outside the window the box did not stay staged on A: %v %+v", err, r)
		}
		checkBootSteady(t, u, "A")
		moveClock(ctx, t, l, wait.Add(-3*time.Second))
		version, slot := waitBanner(ctx, t, l, mark)
		if version != v2.Version || slot != "B" {
			t.Fatalf("rebooted into %s on slot %s; want %s on B", version, slot, v2.Version)
		}
		r := healthyOn(ctx, t, l, v2.Version, "B")
		r = waitUpdate(ctx, t, l, "commit of "+v2.Version, 3*time.Minute, func(u status.UpdateStatus) bool {
			return u.State == agent.Committed && u.Last != nil && u.Last.Result == agent.OutcomeCommitted
		})
		checkBootSteady(t, r.Update, "B")
		// Out of the window again. The box's clock runs on inside the
		// window past its reboot point, where a staged release reboots
		// at once; the next release must stay staged until apply-now,
		// however long the test has taken so far.
		moveClock(ctx, t, l, wait.Add(12*time.Hour))
	})

	// A release whose validator refuses the installed config: the box
	// runs, but not with its config, so the trial is not healthy.
	t.Run("rollback of a release that rejects the config", func(t *testing.T) {
		rollsBack(ctx, t, l, badRelease{rejects, "config not in force: /data/pqbranch.json: hostname: fault injected", 1}, v2.Version, "B", "A")
	})

	t.Run("B to A", func(t *testing.T) {
		stage(ctx, t, l, v3)
		mark := l.VM.Mark()
		console(ctx, t, l, "update apply-now")
		if version, slot := waitBanner(ctx, t, l, mark); version != v3.Version || slot != "A" {
			t.Fatalf("rebooted into %s on %s; want %s on A", version, slot, v3.Version)
		}
		healthyOn(ctx, t, l, v3.Version, "A")
		r := waitUpdate(ctx, t, l, "commit of "+v3.Version, 3*time.Minute, func(u status.UpdateStatus) bool {
			return u.State == agent.Committed && u.Last != nil && u.Last.To == v3.Version
		})
		checkBootSteady(t, r.Update, "A")
	})
}

// TestRollbacks offers one box three bad releases: one that is never
// healthy, one whose kernel panics and one whose init hangs. Each is
// applied at once (update apply-now, outside the window); each time the
// box boots it on trial from slot B, is back on slot A by itself with the
// reason in status, and does not try that release again.
func TestRollbacks(t *testing.T) {
	ctx, v1 := updateTest(t, 45*time.Minute)
	unhealthy := buildRelease(t, "0.3.0-unhealthy", v1.Epoch+200, release.FaultUnhealthy)
	panics := buildRelease(t, "0.3.1-panic", v1.Epoch+300, release.FaultPanic)
	hangs := buildRelease(t, "0.3.2-hang", v1.Epoch+400, release.FaultHang)

	l := startHealthyBox(ctx, t, v1.Version)

	for _, bad := range []badRelease{
		{unhealthy, "fault injected", 1},
		{panics, "never started its userland", 2},
		{hangs, "never started its userland", 2},
	} {
		t.Run("rollback of "+bad.rel.Version, func(t *testing.T) {
			rollsBack(ctx, t, l, bad, v1.Version, "A", "B")
		})
	}
}

// badRelease is a release whose trial fails.
type badRelease struct {
	rel    testRelease
	reason string // what the rolled-back status must say
	boots  int    // trial boots before the rollback
}

// rollsBack applies bad at once on a box that runs home from homeSlot: it
// boots on trial from trialSlot, the box is back on homeSlot by itself
// with the reason in status, and bad is not tried again.
func rollsBack(ctx context.Context, t *testing.T, l *Lab, bad badRelease, home, homeSlot, trialSlot string) {
	t.Helper()
	stage(ctx, t, l, bad.rel)
	mark := l.VM.Mark()
	console(ctx, t, l, "update apply-now")
	for i := 0; i < bad.boots; i++ {
		if i > 0 {
			// A trial boot that left no verdict gets one more, in the
			// window like any reboot: apply it now again.
			waitUpdate(ctx, t, l, "retry of "+bad.rel.Version, 3*time.Minute, func(u status.UpdateStatus) bool {
				return u.State == agent.Staged && u.Target == bad.rel.Version && reasonHas(u, "trying once more")
			})
			console(ctx, t, l, "update apply-now")
		}
		version, slot := waitBanner(ctx, t, l, mark)
		if version != bad.rel.Version || slot != trialSlot {
			t.Fatalf("trial boot %d: %s on %s; want %s on %s", i+1, version, slot, bad.rel.Version, trialSlot)
		}
		mark = l.VM.Mark()
		// The firmware brings the box back by itself.
		if version, slot = waitBanner(ctx, t, l, mark); version != home || slot != homeSlot {
			t.Fatalf("after trial boot %d: %s on %s; want %s on %s", i+1, version, slot, home, homeSlot)
		}
		mark = l.VM.Mark()
	}
	r := waitUpdate(ctx, t, l, "rollback of "+bad.rel.Version, 5*time.Minute, func(u status.UpdateStatus) bool {
		return u.State == agent.RolledBack && u.Last != nil && u.Last.Result == agent.OutcomeRolledBack && u.Last.To == bad.rel.Version
	})
	t.Logf("rolled back: %s", describe(r.Update))
	if !strings.Contains(r.Update.Last.Reason, bad.reason) {
		t.Errorf("rollback reason %q does not say %q", r.Update.Last.Reason, bad.reason)
	}
	healthyOn(ctx, t, l, home, homeSlot)
	checkBootSteady(t, r.Update, homeSlot)
	// The failed release is not tried again.
	console(ctx, t, l, "update check")
	r = waitUpdate(ctx, t, l, "refusal to retry "+bad.rel.Version, 2*time.Minute, func(u status.UpdateStatus) bool {
		return u.State != agent.Downloading && u.State != agent.Staged && reasonHas(u, "failed its trial before")
	})
	checkBootSteady(t, r.Update, homeSlot)
}

// updateTest starts an update test that boots a box of its own in a lab
// of its own: it runs beside the other update tests (under TCG a VM keeps
// one core busy, so two share the machine's two), within d, and returns
// the default image's release every box starts on.
func updateTest(t *testing.T, d time.Duration) (context.Context, release.Release) {
	t.Helper()
	needLab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	v1, _ := defaultRelease(t)
	return ctx, v1
}
