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

// rawSlotWrite is the staging floor: the payload's bytes, already in
// memory, to a slot file in dir with one fdatasync.
func rawSlotWrite(dir, disk string) (time.Duration, error) {
	src, err := os.Open(disk)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	payload, err := io.ReadAll(images.SlotReader(src))
	if err != nil {
		return 0, err
	}
	start := time.Now()
	raw, err := slots.CreateFile(filepath.Join(dir, "raw-slot"), int64(len(payload)))
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	if _, err := raw.WriteAt(payload, 0); err != nil {
		return 0, err
	}
	if err := raw.Sync(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// agentStaging stages the bundle with the real agent into a slot file in
// dir: the cost of verifying every chunk, the per-position syncs and the
// read-back. It returns the time and the agent's peak heap growth.
func agentStaging(ctx context.Context, dir, bundlePath string, keys hybrid.Keyring, running release.Release) (time.Duration, int64, error) {
	running.Version += "-bench-running" // the bundle is not the running build
	running.Epoch, running.BuildID = 0, ""
	ag, err := agent.New(agent.Options{
		DataDir: filepath.Join(dir, "state"), Running: running, Slot: "A",
		Disk: benchSlots{dir: dir, size: int64(images.SlotMiB * images.MiB)}, Boot: nopBoot{}, Keys: keys,
		Health: func() (bool, string) { return true, "" }, Reboot: func(string) error { return errors.New("bench: no reboot") },
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return 0, 0, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return 0, 0, err
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
	start := time.Now()
	if err := ag.Do(ctx, agent.Request{Cmd: agent.CmdInstall, Path: bundlePath}); err != nil {
		return 0, 0, fmt.Errorf("install: %w", err)
	}
	for st := ag.Status(); st.State != agent.Staged; st = ag.Status() {
		if st.State == agent.Failed {
			return 0, 0, fmt.Errorf("staging failed: %s", st.Reason)
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("staging: still %s: %w", st.State, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	took := time.Since(start)
	stop()
	<-sampling
	return took, int64(peak.Load()) - int64(base.HeapInuse), nil
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

// downtimeFigures are the reboot request to tunnel up times, s.
type downtimeFigures struct {
	Accel            string
	Downtime, Reboot Figure // into the update, plain
}

// measureDowntime boots the image in the lab and times, from the reboot
// request to the tunnel being up again: a plain reboot, then, when there
// is a bundle, the reboot into the update (another release), which boots
// the other slot on trial. ctx bounds the lab's life; every wait inside
// has its own deadline. An error is for the figures not set.
func measureDowntime(ctx context.Context, b *boards.Board, img, bundlePath string, progress io.Writer) (downtimeFigures, error) {
	var f downtimeFigures
	state, err := os.MkdirTemp("", "pqb-bench-box-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(state)
	l, err := lab.Start(ctx, lab.Options{Board: b, Image: img, Progress: progress, StateDir: state})
	if err != nil {
		return f, err
	}
	defer closeLab(l, progress)
	f.Accel = l.VM.Accel
	wait := func(mark int, re *regexp.Regexp, what string) error {
		wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
		defer wcancel()
		if _, err := l.VM.WaitLineAfter(wctx, mark, re); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	established := func(what string) error {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		if _, err := l.WaitStatus(wctx, lab.Established); err != nil {
			return fmt.Errorf("%s: status: %w", what, err)
		}
		return nil
	}
	if err := wait(0, tunnelUp, "first tunnel"); err != nil {
		return f, err
	}
	if err := established("first tunnel"); err != nil {
		return f, err
	}

	fmt.Fprintln(progress, "bench: plain reboot to tunnel up")
	mark := l.VM.Mark()
	if err := l.Command(ctx, "reboot"); err != nil {
		return f, err
	}
	// From the moment the shell started the reboot, as the update's
	// downtime counts from its "rebooting" line: typing is not downtime.
	start := time.Now()
	if err := wait(mark, tunnelUp, "tunnel after a reboot"); err != nil {
		return f, err
	}
	f.Reboot = measured(time.Since(start).Seconds())
	if bundlePath == "" {
		return f, nil
	}
	if err := established("tunnel after a reboot"); err != nil {
		return f, err
	}

	fmt.Fprintln(progress, "bench: update reboot to tunnel up")
	if err := l.Publish(bundlePath, "update.pqb"); err != nil {
		return f, err
	}
	if err := l.Command(ctx, "update check"); err != nil {
		return f, err
	}
	stCtx, stCancel := context.WithTimeout(ctx, 10*time.Minute)
	_, err = l.WaitStatus(stCtx, func(r *status.Report) bool { return r.Update.State == agent.Staged })
	stCancel()
	if err != nil {
		return f, fmt.Errorf("staging the update: %w", err)
	}
	mark = l.VM.Mark()
	if err := l.Command(ctx, "update apply-now"); err != nil {
		return f, err
	}
	if err := wait(mark, regexp.MustCompile(`update: rebooting`), "the update's reboot"); err != nil {
		return f, err
	}
	start = time.Now()
	if err := wait(mark, tunnelUp, "tunnel on the new slot"); err != nil {
		return f, err
	}
	f.Downtime = measured(time.Since(start).Seconds())
	return f, nil
}

// updateSteps measure the update figures: staging against a raw write,
// the agent's memory, and the downtime of an update against a plain
// reboot. The update needs a second release: it is built from this tree
// under another version.
func updateSteps(o Options, b *boards.Board, dir string, m *firmware.Manifest) []step {
	disk := filepath.Join(dir, "disk.img")
	return []step{{
		name: "staging a bundle", limit: 15 * time.Minute,
		rows: []Row{
			{Metric: fmt.Sprintf("stage a bundle: verify every chunk, write, read back (%d MiB slot)", images.SlotMiB), Unit: "s",
				Baseline: "raw write of the same bytes to a slot file, one fdatasync"},
			{Metric: "update agent's peak heap growth while staging", Unit: "MiB"},
		},
		measure: func(ctx context.Context, rows []Row) error {
			tmp, err := os.MkdirTemp("", "pqb-bench-update-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			raw, err := rawSlotWrite(tmp, disk)
			rows[0].Base = figure(raw.Seconds(), err)
			keys, err := hybrid.ReadKeyring(filepath.Join(dir, firmware.KeysName))
			if err != nil {
				return err
			}
			took, heap, err := agentStaging(ctx, tmp, filepath.Join(dir, firmware.BundleName), keys, m.Release)
			if err != nil {
				return err
			}
			rows[0].Value, rows[1].Value = measured(took.Seconds()), measured(mib(heap))
			return nil
		},
	}, {
		// The lab's waits have their own deadlines; this one is the
		// backstop over the second build and the lab.
		name: "update downtime", limit: 60 * time.Minute,
		rows: []Row{{Metric: "update downtime: reboot request to tunnel up on the new slot under QEMU", Unit: "s",
			Baseline: "plain reboot of the same image to tunnel up"}},
		measure: func(ctx context.Context, rows []Row) error {
			out, err := os.MkdirTemp("", "pqb-bench-release-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(out)
			fmt.Fprintln(o.Progress, "bench: building a second release for the update")
			bundle := filepath.Join(out, b.Name, firmware.BundleName)
			if _, err := firmware.Build(ctx, firmware.Options{Board: b.Name, RepoDir: o.RepoDir, OutDir: out, CacheDir: o.CacheDir,
				Version: m.Release.Version + "-next", Epoch: m.Release.Epoch + 1}); err != nil {
				// The plain reboot, the baseline, needs no second release.
				rows[0].Value = figure(0, fmt.Errorf("second release: %w", err))
				bundle = ""
			}
			d, err := measureDowntime(ctx, b, disk, bundle, o.Progress)
			if d.Accel != "" {
				rows[0].Metric = "update downtime: reboot request to tunnel up on the new slot under " + d.Accel
			}
			rows[0].Base = d.Reboot
			if bundle != "" {
				rows[0].Value = d.Downtime
			}
			return err
		},
	}}
}
