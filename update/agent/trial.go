package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/pqbranch/pqbranch/update/fleet/report"
)

// reconcile compares state.json with the slot this boot came from, at
// every start, before anything else. It reports whether this boot is a
// trial that Run must judge.
//
// A trial is armed with BootNext, which the firmware honours once: if the
// trial slot panics, hangs (watchdog) or loses power, the next boot
// follows BootOrder back to the old slot. So "armed, and we booted the
// old slot" means the trial boot failed, and the markers the trial slot
// left in state.json say how far it got.
func (a *Agent) reconcile() (trialBoot bool) {
	now := a.o.Now()
	t := a.p.Trial
	if t != nil && t.Armed && a.o.Slot == t.Slot {
		a.update(func(*persisted) {
			if t.ReachedInit.IsZero() {
				t.ReachedInit = now // the marker the old slot reads if this boot dies
			}
		})
		a.set(func(s *Status) { s.State, s.Target = Trial, t.Version })
		a.log.Info("trial boot", "slot", t.Slot, "version", t.Version, "boot", t.Boots)
		return true
	}
	if t != nil && t.Armed {
		why := trialFailure(t)
		if t.Verdict == "" && t.Boots < maxTrialBoots && a.stagedFor(t) {
			// No verdict: the trial may have died of a power cut rather
			// than of its build. It gets one more boot, in the window.
			a.update(func(*persisted) { t.Armed = false })
			a.log.Warn("trial boot failed; trying once more", "version", t.Version, "why", why)
			a.setStaged(t.Version, fmt.Sprintf("trial boot %d of %d failed (%s); trying once more", t.Boots, maxTrialBoots, why))
			return false
		}
		if t.Boots > 1 {
			why = fmt.Sprintf("%s (trial boot %d of %d)", why, t.Boots, maxTrialBoots)
		}
		a.rollBack(t, why)
		return false
	}
	if t != nil && !t.Armed && !a.stagedFor(t) {
		a.update(func(p *persisted) { p.Trial = nil }) // a retry whose slot is gone
	}
	if d := a.p.Download; d != nil && d.Slot != a.inactive() {
		// The slot written then is the one running now: it was
		// overwritten by booting it (e.g. a manual boot selection).
		a.update(func(p *persisted) { p.Download, p.Trial = nil, nil })
	}
	if d := a.p.Download; d != nil && d.Staged {
		a.setStaged(d.Release.Version, "")
	}
	return false
}

// stagedFor reports whether the staged download is t's build.
func (a *Agent) stagedFor(t *trial) bool {
	d := a.p.Download
	return d != nil && d.Staged && d.Release.BuildID == t.BuildID && d.Slot == t.Slot
}

// noUserland is the verdict on a trial boot that never started the update
// agent: the kernel panicked, init hung (the watchdog reset the box), or
// the power failed first.
const noUserland = "never started its userland: kernel panic, hang, or power cut"

// trialFailure explains a failed trial boot from the markers it left.
func trialFailure(t *trial) string {
	switch {
	case t.Verdict != "":
		return t.Verdict
	case t.ReachedInit.IsZero():
		return noUserland
	case t.LastHealth != "":
		return fmt.Sprintf("reached init at %s, then reset (last health check: %s)", t.ReachedInit.Format(time.RFC3339), t.LastHealth)
	default:
		return fmt.Sprintf("reached init at %s, then reset", t.ReachedInit.Format(time.RFC3339))
	}
}

// rollBack records a failed trial: the build is never tried again.
func (a *Agent) rollBack(t *trial, why string) {
	now := a.o.Now()
	// BootNext was consumed by the failed boot; clear it anyway so no
	// stray reboot lands in the failed slot.
	if err := a.o.Boot.ClearNext(); err != nil {
		a.log.Error("clear BootNext after a failed trial", "err", err)
	}
	a.update(func(p *persisted) {
		p.Failed = append(p.Failed, failedBuild{BuildID: t.BuildID, Version: t.Version, Epoch: t.Epoch, At: now, Reason: why})
		p.Last = &Result{Result: OutcomeRolledBack, At: now, From: t.From, To: t.Version, Reason: why}
		a.queueReport(p, t, report.RolledBack, why, now)
		p.Trial, p.Download = nil, nil
	})
	a.log.Error("update rolled back", "version", t.Version, "slot", t.Slot, "why", why)
	a.set(func(s *Status) { s.State, s.Target, s.Reason = RolledBack, t.Version, why })
}

// runTrial judges this trial boot: healthy within TrialTimeout (counted
// from the first time this boot reached init) commits the slot;
// otherwise the verdict is written down and the machine reboots into the
// old slot, which BootOrder still names.
func (a *Agent) runTrial(ctx context.Context) {
	t := a.p.Trial
	if a.o.Running.BuildID != "" && t.BuildID != "" && a.o.Running.BuildID != t.BuildID {
		a.giveUp(fmt.Sprintf("slot %s runs build %s; expected %s", t.Slot, short(a.o.Running.BuildID), short(t.BuildID)))
		return
	}
	deadline := t.ReachedInit.Add(a.o.TrialTimeout)
	for {
		ok, why := a.o.Health()
		if ok {
			if err := a.commit(t); err == nil {
				return
			} else {
				why = err.Error()
			}
		}
		if why != t.LastHealth {
			a.update(func(*persisted) { t.LastHealth = why })
		}
		a.set(func(s *Status) { s.Reason = why })
		now := a.o.Now()
		if !now.Before(deadline) {
			a.giveUp(fmt.Sprintf("unhealthy after %s: %s", human(a.o.TrialTimeout), why))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-a.o.After(min(a.o.HealthInterval, deadline.Sub(now))):
		}
	}
}

// commit makes the trial slot the default. BootOrder is written before
// state.json: a power cut between the two boots the new slot as a trial
// again, which commits again; the other order could forget a commit.
func (a *Agent) commit(t *trial) error {
	if err := a.o.Boot.Commit(t.Slot); err != nil {
		return fmt.Errorf("commit slot %s: %w", t.Slot, err)
	}
	now := a.o.Now()
	a.update(func(p *persisted) {
		p.SecurityFloor = max(p.SecurityFloor, t.SecurityVersion)
		p.Last = &Result{Result: OutcomeCommitted, At: now, From: t.From, To: t.Version}
		a.queueReport(p, t, report.Committed, "", now)
		p.Trial, p.Download, p.Rejected = nil, nil, nil
	})
	a.log.Info("update committed", "version", t.Version, "slot", t.Slot, "security_floor", a.floor())
	a.set(func(s *Status) { s.State, s.Target, s.Reason = Committed, t.Version, "" })
	return nil
}

// giveUp ends a trial from inside the trial slot: the verdict goes to
// state.json first, so the old slot reports why, then the machine reboots.
func (a *Agent) giveUp(verdict string) {
	t := a.p.Trial
	a.update(func(*persisted) { t.Verdict = verdict })
	a.log.Error("trial failed; rebooting into the old slot", "version", t.Version, "why", verdict)
	a.set(func(s *Status) { s.State, s.Reason = Rebooting, verdict })
	if err := a.o.Reboot(fmt.Sprintf("trial of %s failed: %s", t.Version, verdict)); err != nil {
		a.set(func(s *Status) { s.State, s.Reason = Failed, fmt.Sprintf("%s; reboot: %v", verdict, err) })
	}
}

// replan is how often a staged update looks at the wall clock again.
const replan = 15 * time.Second

// waitWindow holds a staged update until its reboot time in the
// maintenance window (or apply-now), then arms the trial. It returns early
// for cancel, a request from the socket, or shutdown.
func (a *Agent) waitWindow(ctx context.Context) {
	opCtx, end := a.beginOp(ctx)
	defer end()
	d := a.p.Download
	if a.verified != d.Header {
		// Staged before this process started: read the slot back again.
		a.set(func(s *Status) { s.State = Verifying })
		err := a.verifySlot(opCtx, d)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case a.cancelledByOperator():
			a.drop()
			return
		default:
			a.update(func(p *persisted) { p.Download, p.Trial = nil, nil })
			a.set(func(s *Status) { s.State, s.Reason = Failed, err.Error() })
			return
		}
	}
	for {
		at, ok := a.plan()
		a.set(func(s *Status) {
			s.State, s.Target, s.WaitUntil = Staged, d.Release.Version, at
			if !ok {
				s.Reason = fmt.Sprintf("no maintenance window leaves %s for the reboot; waiting for apply-now", human(a.o.RebootBudget))
			}
		})
		a.mu.Lock()
		now := a.applyNow
		a.mu.Unlock()
		if now || (ok && !a.o.Now().Before(at)) {
			a.armTrial(d)
			return
		}
		// Re-plan at least every replan: the clock may be stepped (NTP
		// after boot, a dead RTC battery), and timers run on the
		// monotonic clock, blind to that.
		wait := replan
		if ok {
			wait = min(at.Sub(a.o.Now()), replan)
		}
		select {
		case <-opCtx.Done():
			if ctx.Err() == nil && a.cancelledByOperator() {
				a.drop()
			}
			return
		case r := <-a.reqs:
			end()
			a.handle(ctx, r)
			return
		case <-a.wake:
		case <-a.o.After(wait):
		}
	}
}

// setStaged shows version staged, with its planned reboot, in one step:
// a reader never sees "staged" without "until when".
func (a *Agent) setStaged(version, reason string) {
	at, ok := a.plan()
	a.set(func(s *Status) {
		s.State, s.Target, s.Reason, s.WaitUntil = Staged, version, reason, time.Time{}
		if ok {
			s.WaitUntil = at
		}
	})
}

// plan is the reboot time: a point in the next window occurrence that
// leaves RebootBudget, or now without a window.
func (a *Agent) plan() (time.Time, bool) {
	now := a.o.Now()
	if a.o.Window.IsZero() {
		return now, true
	}
	at, _, ok := a.o.Window.Next(now, a.o.DeviceID, a.o.RebootBudget)
	return at, ok
}

func (a *Agent) verifySlot(ctx context.Context, d *download) error {
	dev, err := a.o.Disk.OpenSlot(d.Slot)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := readBack(ctx, dev, d.Size, d.SHA256, 1<<20); err != nil {
		return fmt.Errorf("slot %s: %w", d.Slot, err)
	}
	a.verified = d.Header
	return nil
}

// armTrial records the trial in state.json, then points BootNext at the
// staged slot and reboots. The record comes first: whatever boots next
// must know a trial was armed.
func (a *Agent) armTrial(d *download) {
	now := a.o.Now()
	t := a.p.Trial
	if t == nil || t.BuildID != d.Release.BuildID || t.Slot != d.Slot {
		t = &trial{Slot: d.Slot, Version: d.Release.Version, BuildID: d.Release.BuildID,
			SecurityVersion: d.Release.SecurityVersion, Epoch: d.Release.Epoch,
			From: a.o.Running.Version, Started: now, Timing: d.Timing}
	}
	a.update(func(p *persisted) {
		t.Boots++
		t.Armed = true
		t.ReachedInit, t.LastHealth, t.Verdict = time.Time{}, "", ""
		p.Trial = t
		a.applyNow = false
	})
	disarm := func(err error) {
		a.update(func(p *persisted) {
			t.Boots--
			t.Armed = false
		})
		a.log.Error("arm trial", "version", t.Version, "err", err)
		a.set(func(s *Status) { s.State, s.Reason = Failed, err.Error() })
	}
	if _, err := a.o.Boot.Ensure(); err != nil {
		disarm(fmt.Errorf("boot entries: %w", err))
		return
	}
	if err := a.o.Boot.SetNext(d.Slot); err != nil {
		disarm(fmt.Errorf("set BootNext to slot %s: %w", d.Slot, err))
		return
	}
	a.log.Info("rebooting into trial", "version", t.Version, "slot", t.Slot, "boot", t.Boots)
	a.set(func(s *Status) { s.State, s.Reason, s.WaitUntil = Rebooting, "", time.Time{} })
	if err := a.o.Reboot("update to " + t.Version); err != nil {
		if cerr := a.o.Boot.ClearNext(); cerr != nil {
			a.log.Error("clear BootNext", "err", cerr)
		}
		disarm(fmt.Errorf("reboot: %w", err))
	}
}
