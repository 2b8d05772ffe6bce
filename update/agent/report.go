package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/update/fleet/device"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// reportKeyFile holds the device's report signing key (hex Ed25519 seed),
// made once on the data partition: it survives updates and rollbacks, so
// the fleet enrols a box once.
const reportKeyFile = "report-key"

// maxPendingReports bounds the queue of unsent reports in state.json. A
// box that cannot reach its report endpoint for many updates keeps the
// newest: they say what it runs now.
const maxPendingReports = 16

// Retry delays for unsent reports: doubling from the first to the last.
const (
	reportRetryMin = 30 * time.Second
	reportRetryMax = 30 * time.Minute
	reportTimeout  = time.Minute
)

// reportKey loads the device's report key from dir, creating it the
// first time.
func reportKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, reportKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("agent: %s: expected %d bytes of hex (an Ed25519 seed)", path, ed25519.SeedSize)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("agent: report key: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("agent: report key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, reportKeyFile+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("agent: report key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(seed) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: report key %s: %w", path, err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// queueReport adds the outcome of t to p's queue, numbered after the last
// report. Callers hold a.mu (inside update), so the report is saved in the
// same write as the outcome itself. Without a report endpoint it does
// nothing.
func (a *Agent) queueReport(p *persisted, t *trial, o report.Outcome, reason string, finished time.Time) {
	if a.sender == nil {
		return
	}
	running := t.Version
	if o != report.Committed {
		running = t.From
	}
	began := t.Timing.Began
	if began.IsZero() || began.After(t.Started) {
		began = t.Started
	}
	r := report.Report{
		Device: a.o.DeviceID, Board: a.o.Running.Board, From: t.From, To: t.Version,
		Outcome: o, Reason: reason, Running: running, Started: began, Finished: finished,
		DownloadMS: span(t.Timing.Began, t.Timing.Written), InstallMS: span(t.Timing.Written, t.Timing.Staged),
		TrialMS: span(t.Started, finished),
	}
	if r.Finished.Before(r.Started) { // a clock stepped back during the update
		r.Finished = r.Started
	}
	p.ReportSeq++
	r.Seq = p.ReportSeq
	q := append(p.Reports[:len(p.Reports):len(p.Reports)], r) // never in place: a saved snapshot may share the array
	if len(q) > maxPendingReports {
		a.log.Warn("report queue full; dropping the oldest", "seq", q[0].Seq, "to", q[0].To)
		q = q[len(q)-maxPendingReports:]
	}
	p.Reports = q
	select {
	case a.reportWake <- struct{}{}:
	default:
	}
}

// span is b-a in milliseconds, 0 when either is unknown or the clock went
// backwards.
func span(a, b time.Time) int64 {
	if a.IsZero() || b.IsZero() || b.Before(a) {
		return 0
	}
	return b.Sub(a).Milliseconds()
}

// reportLoop sends queued reports until ctx ends: at once when one is
// queued, and again with a growing delay while the endpoint cannot be
// reached or refuses (a device not enrolled yet is enrolled later).
func (a *Agent) reportLoop(ctx context.Context) {
	delay := reportRetryMin
	for {
		err := a.flushReports(ctx)
		var wait <-chan time.Time
		if err != nil {
			a.log.Warn("outcome report not sent; retrying", "in", delay, "err", err)
			a.set(func(s *Status) { s.ReportError = err.Error() })
			wait = a.o.After(delay)
			delay = min(2*delay, reportRetryMax)
		} else {
			a.set(func(s *Status) { s.ReportError = "" })
			delay = reportRetryMin
		}
		select {
		case <-ctx.Done():
			return
		case <-a.reportWake:
		case <-wait:
		}
	}
}

// flushReports sends the queue, oldest first, and removes each report the
// endpoint accepted (or had already accepted).
func (a *Agent) flushReports(ctx context.Context) error {
	for {
		a.mu.Lock()
		if len(a.p.Reports) == 0 {
			a.mu.Unlock()
			return nil
		}
		r := a.p.Reports[0]
		a.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, reportTimeout)
		err := a.sender.Send(sctx, r)
		cancel()
		var refused *report.RefusedError
		switch {
		case err == nil:
			a.log.Info("outcome report sent", "seq", r.Seq, "outcome", r.Outcome.String(), "to", r.To)
		case errors.As(err, &refused) && refused.Replay():
			// Accepted before, and the answer was lost: done.
			a.log.Info("outcome report already accepted", "seq", r.Seq)
		default:
			return err
		}
		a.update(func(p *persisted) {
			if len(p.Reports) > 0 && p.Reports[0].Seq == r.Seq {
				p.Reports = p.Reports[1:]
			}
		})
	}
}

// checkedIn shows a repository check-in's decision in status.
func (a *Agent) checkedIn(res device.Result) {
	now := a.o.Now()
	offer := res.Action.String() + ": " + res.Reason
	if res.Action == rollout.Install {
		offer = fmt.Sprintf("install %s (wave %d): %s", res.Decision.Target.Version, res.Wave, res.Reason)
	}
	a.log.Info("repository check-in", "decision", offer)
	a.set(func(s *Status) { s.CheckedIn, s.Offer = now, offer })
}
