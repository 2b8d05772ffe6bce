package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/images"
	"github.com/pqbranch/pqbranch/qemu/lab"
	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/update/agent"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/slots"
)

// updateFigures are the update rows of the table.
type updateFigures struct {
	VerifyWrite, RawWrite time.Duration // staging the bundle vs copying its payload
	PeakHeap              int64         // the agent's peak heap growth while staging
	Downtime, Reboot      time.Duration // reboot request to tunnel up: into the update, plain
	Accel                 string
}

// measureStaging stages the bundle with the real agent into a slot file,
// next to a raw write of the same payload bytes to another slot file with
// one fdatasync: the cost of verifying every chunk, the per-position syncs
// and the read-back.
func measureStaging(ctx context.Context, bundlePath, disk string, keys hybrid.Keyring, running release.Release) (f updateFigures, err error) {
	dir, err := os.MkdirTemp("", "pqb-bench-update-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)

	// The floor: the payload's bytes, already in memory, to a slot.
	src, err := os.Open(disk)
	if err != nil {
		return f, err
	}
	defer src.Close()
	payload, err := io.ReadAll(images.SlotReader(src))
	if err != nil {
		return f, err
	}
	start := time.Now()
	raw, err := slots.CreateFile(filepath.Join(dir, "raw-slot"), int64(len(payload)))
	if err != nil {
		return f, err
	}
	if _, err := raw.WriteAt(payload, 0); err != nil {
		return f, err
	}
	if err := raw.Sync(); err != nil {
		return f, err
	}
	raw.Close()
	f.RawWrite = time.Since(start)
	payload = nil

	// The agent, from the bundle file to a slot file.
	running.Version += "-bench-running" // the bundle is not the running build
	running.Epoch, running.BuildID = 0, ""
	ag, err := agent.New(agent.Options{
		DataDir: filepath.Join(dir, "state"), Running: running, Slot: "A",
		Disk: benchSlots{dir: dir, size: int64(images.SlotMiB * images.MiB)}, Boot: nopBoot{}, Keys: keys,
		Health: func() (bool, string) { return true, "" }, Reboot: func(string) error { return errors.New("bench: no reboot") },
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return f, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return f, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go ag.Run(runCtx)

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		var m runtime.MemStats
		for runCtx.Err() == nil {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start = time.Now()
	if err := ag.Do(ctx, agent.Request{Cmd: agent.CmdInstall, Path: bundlePath}); err != nil {
		return f, fmt.Errorf("bench: install: %w", err)
	}
	for st := ag.Status(); st.State != agent.Staged; st = ag.Status() {
		if st.State == agent.Failed {
			return f, fmt.Errorf("bench: staging failed: %s", st.Reason)
		}
		time.Sleep(2 * time.Millisecond)
	}
	f.VerifyWrite = time.Since(start)
	stop()
	<-sampling
	f.PeakHeap = int64(peak.Load()) - int64(base.HeapInuse)
	return f, nil
}

// benchSlots gives the agent plain files as slots.
type benchSlots struct {
	dir  string
	size int64
}

func (s benchSlots) OpenSlot(slot string) (agent.Device, error) {
	return slots.CreateFile(filepath.Join(s.dir, "slot-"+slot), s.size)
}

// nopBoot stands in for the UEFI variables: staging touches none.
type nopBoot struct{}

func (nopBoot) Ensure() (map[string]uint16, error) { return map[string]uint16{"A": 0, "B": 1}, nil }
func (nopBoot) SetNext(string) error               { return errors.New("bench: no trial") }
func (nopBoot) ClearNext() error                   { return nil }
func (nopBoot) Commit(string) error                { return errors.New("bench: no commit") }

// measureDowntime boots the image in the lab and times, from the reboot
// request to the tunnel being up again: a plain reboot, then the reboot
// into the update (bundle, another release), which boots the other slot on
// trial.
func measureDowntime(ctx context.Context, b *boards.Board, img, bundlePath string, progress io.Writer) (f updateFigures, err error) {
	ctx, cancel := context.WithTimeout(ctx, 25*time.Minute)
	defer cancel()
	state, err := os.MkdirTemp("", "pqb-bench-box-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(state)
	l, err := lab.Start(ctx, lab.Options{Board: b, Image: img, Progress: progress, StateDir: state})
	if err != nil {
		return f, err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench: lab teardown: %w", cerr)
		}
	}()
	f.Accel = l.VM.Accel
	up := regexp.MustCompile(`tunnel established`)
	wait := func(mark int, re *regexp.Regexp, what string) error {
		wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
		defer wcancel()
		if _, err := l.VM.WaitLineAfter(wctx, mark, re); err != nil {
			return fmt.Errorf("bench: %s: %w", what, err)
		}
		return nil
	}
	if err := wait(0, up, "first tunnel"); err != nil {
		return f, err
	}
	if _, err := l.WaitStatus(ctx, lab.Established); err != nil {
		return f, err
	}

	fmt.Fprintln(progress, "bench: plain reboot to tunnel up")
	mark := l.VM.Mark()
	start := time.Now()
	if err := l.VM.Send("reboot\r"); err != nil {
		return f, err
	}
	if err := wait(mark, up, "tunnel after a reboot"); err != nil {
		return f, err
	}
	f.Reboot = time.Since(start)
	if _, err := l.WaitStatus(ctx, lab.Established); err != nil {
		return f, err
	}

	fmt.Fprintln(progress, "bench: update reboot to tunnel up")
	if err := l.Publish(bundlePath, "update.pqb"); err != nil {
		return f, err
	}
	if err := l.VM.Send("update check\r"); err != nil {
		return f, err
	}
	stCtx, stCancel := context.WithTimeout(ctx, 10*time.Minute)
	_, err = l.WaitStatus(stCtx, func(r *status.Report) bool { return r.Update.State == agent.Staged })
	stCancel()
	if err != nil {
		return f, fmt.Errorf("bench: staging the update: %w", err)
	}
	mark = l.VM.Mark()
	if err := l.VM.Send("update apply-now\r"); err != nil {
		return f, err
	}
	if err := wait(mark, regexp.MustCompile(`update: rebooting`), "the update's reboot"); err != nil {
		return f, err
	}
	start = time.Now()
	if err := wait(mark, up, "tunnel on the new slot"); err != nil {
		return f, err
	}
	f.Downtime = time.Since(start)
	return f, nil
}

// updateRows measures the update figures: staging against a raw write,
// the agent's memory, and the downtime of an update against a plain
// reboot. The update needs a second release: it is built from this tree
// under another version.
func updateRows(ctx context.Context, o Options, b *boards.Board, dir string, m *firmware.Manifest) ([]Row, error) {
	keys, err := hybrid.ReadKeyring(filepath.Join(dir, firmware.KeysName))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s, err := measureStaging(ctx, filepath.Join(dir, firmware.BundleName), filepath.Join(dir, "disk.img"), keys, m.Release)
	if err != nil {
		return nil, err
	}
	out, err := os.MkdirTemp("", "pqb-bench-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	fmt.Fprintln(o.Progress, "bench: building a second release for the update")
	if _, err := firmware.Build(ctx, firmware.Options{Board: b.Name, RepoDir: o.RepoDir, OutDir: out, CacheDir: o.CacheDir,
		Version: m.Release.Version + "-next", Epoch: m.Release.Epoch + 1}); err != nil {
		return nil, err
	}
	d, err := measureDowntime(ctx, b, filepath.Join(dir, "disk.img"), filepath.Join(out, b.Name, firmware.BundleName), o.Progress)
	if err != nil {
		return nil, err
	}
	return []Row{
		{Metric: fmt.Sprintf("stage a bundle: verify every chunk, write, read back (%d MiB slot)", images.SlotMiB), Value: s.VerifyWrite.Seconds(), Unit: "s",
			Baseline: "raw write of the same bytes to a slot file, one fdatasync", Base: s.RawWrite.Seconds()},
		{Metric: "update agent's peak heap growth while staging", Value: mib(s.PeakHeap), Unit: "MiB"},
		{Metric: "update downtime: reboot request to tunnel up on the new slot under " + d.Accel, Value: d.Downtime.Seconds(), Unit: "s",
			Baseline: "plain reboot of the same image to tunnel up", Base: d.Reboot.Seconds()},
	}, nil
}
