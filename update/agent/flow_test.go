package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/update/window"
)

// night is a window that is closed at the rig's start time, so a staged
// update stays staged.
var night = window.Window{Start: 2 * time.Hour, Duration: time.Hour}

// rangeStart is the first byte of a "bytes=N-" Range header, -1 for none.
func rangeStart(t *testing.T, h string) int64 {
	if h == "" {
		return -1
	}
	v, ok := strings.CutPrefix(h, "bytes=")
	if !ok || !strings.HasSuffix(v, "-") {
		t.Fatalf("Range %q: expected bytes=N-", h)
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestResumeAfterInterruption: the link drops mid-download; the agent,
// restarted with the same DataDir (a power cut), asks for the rest with a
// Range request past zero and completes the same slot image.
func TestResumeAfterInterruption(t *testing.T) {
	r := newRig(t)
	p := payload(4, 40*testChunk)
	b, _ := makeBundle(t, rel("0.2.0", 3, 2000), p)
	srv := newBundleServer(t, b)
	hdrLen := len(b) - (len(p) - 2*testChunk) // two zero chunks are not stored
	srv.abortAfter = hdrLen + 20*testChunk + 100

	a, stop := r.run("A", withURL(srv))
	st := waitState(t, a, Failed)
	if !strings.Contains(st.Reason, "truncated") {
		t.Errorf("reason %q: expected the dropped link to read as truncated", st.Reason)
	}
	stop()
	d := r.state().Download
	if d == nil || d.Next == 0 || d.Staged {
		t.Fatalf("after the interruption: download record %+v; expected a position past zero", d)
	}

	a2, _ := r.run("A", withURL(srv), withWindow(night))
	waitState(t, a2, Staged)
	ranges, _ := srv.requests()
	var resumed int64 = -1
	for _, h := range ranges {
		resumed = max(resumed, rangeStart(t, h))
	}
	if resumed <= int64(hdrLen) {
		t.Fatalf("requests %q: expected a Range request past the header (%d bytes)", ranges, hdrLen)
	}
	if got := r.disk.bytes("B", len(p)); !bytes.Equal(got, p) {
		t.Fatal("slot B does not hold the payload after the resumed download")
	}
}

// TestBundleChangedUnderneath: a resumed download whose bundle was
// replaced on the server starts over instead of mixing two images.
func TestBundleChangedUnderneath(t *testing.T) {
	r := newRig(t)
	p2 := payload(5, 40*testChunk)
	b2, _ := makeBundle(t, rel("0.2.0", 3, 2000), p2)
	srv := newBundleServer(t, b2)
	srv.abortAfter = len(b2) / 2

	a, stop := r.run("A", withURL(srv))
	waitState(t, a, Failed)
	stop()
	if d := r.state().Download; d == nil || d.Next == 0 {
		t.Fatalf("download record %+v: expected a position", d)
	}

	p3 := payload(6, 40*testChunk)
	b3, v3 := makeBundle(t, rel("0.3.0", 3, 3000), p3)
	srv.set(b3)
	before, _ := srv.requests()
	a2, _ := r.run("A", withURL(srv), withWindow(night))
	st := waitState(t, a2, Staged)
	after, _ := srv.requests()
	for _, h := range after[len(before):] {
		if h != "" {
			t.Fatalf("requests %q after the bundle changed: expected whole-file reads only", after[len(before):])
		}
	}
	if st.Target != "0.3.0" || r.state().Download.Release.BuildID != v3.BuildID {
		t.Fatalf("staged %q; expected 0.3.0", st.Target)
	}
	if got := r.disk.bytes("B", len(p3)); !bytes.Equal(got, p3) {
		t.Fatal("slot B does not hold the new payload")
	}
}

// TestRejectedBundles: every bad bundle is refused with a clear error,
// the slot is never pointed at, and nothing is staged.
func TestRejectedBundles(t *testing.T) {
	p := payload(7, 12*testChunk)
	good, _ := makeBundle(t, rel("0.2.0", 3, 2000), p)
	hdr := func(b []byte) int {
		return 20 + int(binary.BigEndian.Uint32(b[12:])) + int(binary.BigEndian.Uint32(b[16:]))
	}
	otherBoard := rel("0.2.0", 3, 2000)
	otherBoard.Board = "protectli-vp2420"
	wrongBoard, _ := makeBundle(t, otherBoard, p)
	old, _ := makeBundle(t, rel("0.0.9", 0, 900), p)

	tests := []struct {
		name   string
		bundle func() []byte
		want   string // in the failure reason
	}{
		{"bad signature", func() []byte {
			b := bytes.Clone(good)
			b[hdr(b)-10] ^= 1 // inside the signature bytes
			return b
		}, "signature"},
		{"wrong board", func() []byte { return wrongBoard }, "board"},
		{"lower security version", func() []byte { return old }, "security version"},
		{"flipped payload bit", func() []byte {
			b := bytes.Clone(good)
			b[hdr(b)+5*testChunk+77] ^= 0x10
			return b
		}, "chunk"},
		{"truncated", func() []byte { return good[:len(good)-testChunk/2] }, "truncated"},
		{"unsigned", func() []byte {
			m := int(binary.BigEndian.Uint32(good[12:]))
			b := bytes.Clone(good[:20+m])
			binary.BigEndian.PutUint32(b[16:], 0)
			return append(b, good[hdr(good):]...)
		}, "unsigned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			path := filepath.Join(t.TempDir(), "update.pqb")
			if err := os.WriteFile(path, tc.bundle(), 0o644); err != nil {
				t.Fatal(err)
			}
			a, _ := r.run("A")
			err := a.Do(context.Background(), Request{Cmd: CmdInstall, Path: path})
			st := a.Status()
			if err == nil {
				// Header accepted: the payload is what is bad.
				st = waitState(t, a, Failed)
			}
			if st.State != Failed || !strings.Contains(st.Reason, tc.want) {
				t.Fatalf("state %s reason %q; expected failed with %q", st.State, st.Reason, tc.want)
			}
			if n := r.boot.count("SetNext") + r.boot.count("Commit"); n != 0 {
				t.Fatalf("boot calls %v: the slot was pointed at", r.boot.calls)
			}
			if d := r.state().Download; d != nil && d.Staged {
				t.Fatalf("a bad bundle is staged: %+v", d)
			}
			if err := a.Do(context.Background(), Request{Cmd: CmdApplyNow}); err == nil {
				t.Fatal("apply-now after a rejected bundle: accepted")
			}
			if r.rebootCount() != 0 {
				t.Fatal("rebooted")
			}
		})
	}
}

// stageAndArm runs slot A's agent until the trial of b is armed.
func stageAndArm(t *testing.T, r *rig, srv *bundleServer) {
	t.Helper()
	a, stop := r.run("A", withURL(srv))
	waitState(t, a, Rebooting) // no window: reboot at once
	stop()
}

// TestRollbackAndOneRetry: a trial boot that leaves no verdict (a power
// cut, a hang) gets one more boot; the second failure rolls back with the
// reason from the markers, and the build is never tried again, until a
// newer release comes.
func TestRollbackAndOneRetry(t *testing.T) {
	r := newRig(t)
	p := payload(8, 20*testChunk)
	b, v2 := makeBundle(t, rel("0.2.0", 3, 2000), p)
	srv := newBundleServer(t, b)
	r.setHealth(false, "tunnel down")

	stageAndArm(t, r, srv)
	// Trial boot 1: B reaches init, then resets (panic) before a verdict.
	if s := r.bootNext(); s != "B" {
		t.Fatalf("firmware booted %s; expected B", s)
	}
	r.inSlot["B"] = v2
	tb, stopB := r.run("B")
	waitState(t, tb, Trial)
	waitFor(t, "the reached-init marker", func() bool {
		tr := r.state().Trial
		return tr != nil && !tr.ReachedInit.IsZero() && tr.LastHealth == "tunnel down"
	})
	stopB()

	// The reset lands on A: one retry, in the window (none here: at once).
	if s := r.bootNext(); s != "A" {
		t.Fatalf("after the trial's reset the firmware booted %s; expected A", s)
	}
	a, stopA := r.run("A", withURL(srv))
	waitState(t, a, Rebooting)
	if n := r.boot.count("SetNext B"); n != 2 {
		t.Fatalf("SetNext B called %d times; expected a second trial", n)
	}
	stopA()

	// Trial boot 2 dies before init (the agent never starts in B).
	if s := r.bootNext(); s != "B" {
		t.Fatalf("firmware booted %s; expected B", s)
	}
	a, _ = r.run("A", withURL(srv))
	st := waitState(t, a, RolledBack)
	if want := noUserland + " (trial boot 2 of 2)"; st.Reason != want || st.Last == nil || st.Last.Reason != want {
		t.Fatalf("reason %q, last %+v; expected %q", st.Reason, st.Last, want)
	}
	if r.boot.count("Commit") != 0 || r.boot.count("SetNext") != 2 {
		t.Fatalf("boot calls %v", r.boot.calls)
	}
	ps := r.state()
	if len(ps.Failed) != 1 || ps.Failed[0].BuildID != v2.BuildID || ps.Trial != nil || ps.Download != nil {
		t.Fatalf("state after rollback: %+v", ps)
	}

	// The same build again: refused without a download.
	before, _ := srv.requests()
	if err := a.Do(context.Background(), Request{Cmd: CmdCheck}); err == nil || !strings.Contains(err.Error(), "failed its trial before") {
		t.Fatalf("check of the failed build: %v", err)
	}
	if r.boot.count("SetNext") != 2 || a.Status().State == Downloading {
		t.Fatal("the failed build was tried again")
	}
	after, _ := srv.requests()
	if len(after) != len(before)+1 {
		t.Fatalf("requests %q: expected one header fetch", after[len(before):])
	}

	// A newer release is taken.
	b3, _ := makeBundle(t, rel("0.3.0", 3, 3000), payload(9, 20*testChunk))
	srv.set(b3)
	r.setHealth(true, "")
	if err := a.Do(context.Background(), Request{Cmd: CmdCheck}); err != nil {
		t.Fatalf("check of a newer release: %v", err)
	}
	waitState(t, a, Rebooting)
	if r.lastReboot() != "update to 0.3.0" {
		t.Fatalf("reboot %q", r.lastReboot())
	}
}

// TestUnhealthyTrial: a trial that stays unhealthy past TrialTimeout
// writes its verdict and reboots; the old slot rolls back at once, no retry.
func TestUnhealthyTrial(t *testing.T) {
	r := newRig(t)
	b, v2 := makeBundle(t, rel("0.2.0", 3, 2000), payload(10, 20*testChunk))
	srv := newBundleServer(t, b)
	stageAndArm(t, r, srv)
	r.bootNext()
	r.inSlot["B"] = v2
	r.setHealth(false, "tunnel down: no IKE_SA_INIT response")

	tb, stopB := r.run("B")
	waitState(t, tb, Trial)
	for i := 0; i < 10; i++ {
		waitFor(t, "the health timer", func() bool { return r.clk.pending() > 0 })
		if tb.Status().State != Trial {
			t.Fatalf("state %s after %d minutes", tb.Status().State, i)
		}
		r.clk.Add(time.Minute)
	}
	st := waitState(t, tb, Rebooting)
	want := "unhealthy after 10m: tunnel down: no IKE_SA_INIT response"
	if st.Reason != want || !strings.Contains(r.lastReboot(), want) {
		t.Fatalf("reason %q reboot %q; expected %q", st.Reason, r.lastReboot(), want)
	}
	if r.boot.count("Commit") != 0 {
		t.Fatal("an unhealthy trial was committed")
	}
	stopB()

	if s := r.bootNext(); s != "A" {
		t.Fatalf("firmware booted %s; expected A", s)
	}
	a, _ := r.run("A")
	st = waitState(t, a, RolledBack)
	if st.Reason != want {
		t.Fatalf("rollback reason %q; expected %q", st.Reason, want)
	}
	if n := r.boot.count("SetNext"); n != 1 {
		t.Fatalf("SetNext called %d times: an unhealthy verdict gets no retry", n)
	}
}

// TestApplyNowAndCancel: apply-now skips the window; cancel drops a staged
// update and its state.
func TestApplyNowAndCancel(t *testing.T) {
	b, _ := makeBundle(t, rel("0.2.0", 3, 2000), payload(11, 20*testChunk))
	win := night

	t.Run("apply-now", func(t *testing.T) {
		r := newRig(t)
		srv := newBundleServer(t, b)
		a, _ := r.run("A", withURL(srv), withWindow(win))
		st := waitState(t, a, Staged)
		if st.WaitUntil.IsZero() || !st.WaitUntil.After(r.clk.Now()) {
			t.Fatalf("wait_until %v", st.WaitUntil)
		}
		if err := a.Do(context.Background(), Request{Cmd: CmdApplyNow}); err != nil {
			t.Fatal(err)
		}
		waitState(t, a, Rebooting)
		if r.boot.count("SetNext B") != 1 || r.lastReboot() != "update to 0.2.0" {
			t.Fatalf("boot calls %v reboot %q", r.boot.calls, r.lastReboot())
		}
	})
	t.Run("cancel staged", func(t *testing.T) {
		r := newRig(t)
		srv := newBundleServer(t, b)
		a, _ := r.run("A", withURL(srv), withWindow(win))
		waitState(t, a, Staged)
		if err := a.Do(context.Background(), Request{Cmd: CmdCancel}); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, a, Idle)
		if st.Last == nil || st.Last.Result != OutcomeCancelled {
			t.Fatalf("last %+v", st.Last)
		}
		if d := r.state().Download; d != nil {
			t.Fatalf("download record kept after cancel: %+v", d)
		}
		if err := a.Do(context.Background(), Request{Cmd: CmdApplyNow}); err == nil {
			t.Fatal("apply-now after cancel: accepted")
		}
		if r.boot.count("SetNext") != 0 {
			t.Fatal("SetNext after cancel")
		}
	})
	t.Run("cancel downloading", func(t *testing.T) {
		r := newRig(t)
		srv := newBundleServer(t, b)
		srv.hold, srv.holdAfter = make(chan struct{}), len(b)/2
		defer close(srv.hold)
		a, _ := r.run("A", withURL(srv), withWindow(win))
		waitFor(t, "a partial download", func() bool { st := a.Status(); return st.State == Downloading && st.Bytes > 0 })
		if err := a.Do(context.Background(), Request{Cmd: CmdCancel}); err != nil {
			t.Fatal(err)
		}
		waitState(t, a, Idle)
		if d := r.state().Download; d != nil {
			t.Fatalf("download record kept after cancel: %+v", d)
		}
	})
}

// TestRetryAfterNetworkFailure: the WAN is not up yet at boot, or the link
// drops mid-download. Nobody types a command: the agent retries by itself
// after retryMin and resumes where the slot left off.
func TestRetryAfterNetworkFailure(t *testing.T) {
	r := newRig(t)
	p := payload(6, 40*testChunk)
	b, _ := makeBundle(t, rel("0.2.0", 3, 2000), p)
	srv := newBundleServer(t, b)
	srv.abortAfter = len(b) / 2

	a, _ := r.run("A", withURL(srv), withWindow(night))
	if st := waitState(t, a, Failed); !strings.Contains(st.Reason, "truncated") {
		t.Fatalf("reason %q: expected the dropped link", st.Reason)
	}
	// The retry and the periodic check are both waiting on the clock.
	waitFor(t, "the retry timer", func() bool { return r.clk.pending() >= 2 })
	if st := a.Status(); st.State != Failed {
		t.Fatalf("state %s before the retry time", st.State)
	}
	r.clk.Add(retryMin)
	waitFor(t, "the retry", func() bool { return a.Status().State != Failed })
	waitState(t, a, Staged)
	if got := r.disk.bytes("B", len(p)); !bytes.Equal(got, p) {
		t.Fatal("slot B does not hold the payload after the retried download")
	}
}

// TestNoRetryOfARefusedBundle: a bundle the device refuses is not fetched
// again by itself; only a new bundle or an operator's check does that.
func TestNoRetryOfARefusedBundle(t *testing.T) {
	r := newRig(t)
	b, _ := makeBundle(t, rel("0.2.0", 3, 2000), payload(7, 8*testChunk))
	b[len(b)-1] ^= 1 // a flipped bit in the last chunk
	srv := newBundleServer(t, b)
	a, _ := r.run("A", withURL(srv), withWindow(night))
	waitState(t, a, Failed)
	waitFor(t, "the periodic check's timer", func() bool { return r.clk.pending() >= 1 })
	n := len(srv.ranges)
	r.clk.Add(4 * retryMin)
	time.Sleep(200 * time.Millisecond)
	if got, _ := srv.requests(); len(got) != n {
		t.Fatalf("%d requests after the refusal; expected none (had %d)", len(got), n)
	}
}
