// Package bench measures the build and boot figures that `make bench`
// reports, each next to a baseline measured in the same run, because these
// machines are too noisy for absolute numbers to mean much.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/initramfs"
	"github.com/pqbranch/pqbranch/qemu"
)

// Options select the board and where the caches are.
type Options struct {
	Board    string
	RepoDir  string
	CacheDir string
	Progress io.Writer
	// Only, when "update", measures just the update rows.
	Only string
}

// Run measures every figure and returns the table's rows. A figure that
// fails or runs out of time is a failed row, and the other rows are still
// measured: Failures(rows) says whether any failed. Run's error is for a
// run that cannot start (unknown board, no image built).
func Run(ctx context.Context, o Options) ([]Row, error) {
	b, err := boards.Load(o.Board)
	if err != nil {
		return nil, err
	}
	// Sizes and boots use the image `make image` built from this tree (the
	// bench target depends on it), not the benchmark's edited clone.
	dir := filepath.Join(o.RepoDir, "out", b.Name)
	m, err := firmware.ReadManifest(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w: run make image first", err)
	}
	steps, err := plan(o, b, dir, m)
	if err != nil {
		return nil, err
	}
	return runner{progress: o.Progress, grace: time.Minute}.run(ctx, steps), nil
}

// plan lists the steps of a run, each with the rows it fills and a
// deadline well above what it takes on a busy machine under TCG.
func plan(o Options, b *boards.Board, dir string, m *firmware.Manifest) ([]step, error) {
	update := updateSteps(o, b, dir, m)
	switch o.Only {
	case "":
	case "update":
		return update, nil
	default:
		return nil, fmt.Errorf("bench: -only %q: expected \"update\"", o.Only)
	}
	disk := filepath.Join(dir, "disk.img")
	const gokrazy = "gokrazy, measured elsewhere"
	const floorBase = "floor: same kernel, init that powers off at once"
	steps := []step{{
		name: "build times", limit: 45 * time.Minute,
		rows: []Row{
			{Metric: "clean build (empty Go and u-root caches)", Unit: "s", Baseline: gokrazy, Base: measured(58)},
			{Metric: "rebuild after one command changed", Unit: "s", Baseline: gokrazy, Base: measured(3.9)},
		},
		measure: func(ctx context.Context, rows []Row) error { return buildTimes(ctx, o, &rows[0].Value, &rows[1].Value) },
	}, {
		name: "u-root core initramfs", limit: 20 * time.Minute,
		rows: []Row{
			{Metric: "initramfs, compressed (" + m.Initramfs.Compression + ")", Unit: "MiB", Value: measured(mib(m.Initramfs.Size)),
				Baseline: "u-root core set, compressed the same way"},
			{Metric: "initramfs, uncompressed", Unit: "MiB", Value: measured(mib(m.Initramfs.RawSize)), Baseline: "u-root core set, uncompressed"},
		},
		measure: func(_ context.Context, rows []Row) error {
			compressed, raw, err := coreInitramfs(o)
			if err != nil {
				return err
			}
			rows[0].Base, rows[1].Base = measured(mib(compressed)), measured(mib(raw))
			return nil
		},
	}, {
		name: "image sizes",
		rows: []Row{
			{Metric: "disk image, qcow2 (what is stored)", Unit: "MiB", Value: measured(mib(m.Artifacts["disk.qcow2"].Size)),
				Baseline: "gokrazy image, measured elsewhere", Base: measured(51)},
			{Metric: "disk image, raw (both slots and data)", Unit: "MiB", Value: measured(mib(m.Artifacts["disk.img"].Size))},
			{Metric: "unified kernel image (one slot)", Unit: "MiB", Value: measured(mib(m.Artifacts["pqbranch.efi"].Size))},
		},
	}, {
		// One step: the floor is the baseline of both boots. Each boot and
		// each transfer inside has its own deadline; this one is the
		// backstop.
		name: "boots and tunnel throughput", limit: 60 * time.Minute,
		rows: []Row{
			{Metric: "boot to banner under QEMU (OVMF, empty NVRAM)", Unit: "s", Baseline: floorBase},
			{Metric: "boot to tunnel established under QEMU (X25519+ML-KEM)", Unit: "s", Baseline: floorBase},
			{Metric: fmt.Sprintf("TCP LAN -> dc through the tunnel (%d MiB, median)", throughputBytes>>20), Unit: "Mbit/s",
				Baseline: "same VM and path routed in clear (no tunnel)"},
		},
		measure: func(ctx context.Context, rows []Row) error {
			d, err := floorBoot(ctx, o, b)
			floor := figure(d.Seconds(), wrap("floor", err))
			rows[0].Base, rows[1].Base = floor, floor
			d, accel, err := bannerBoot(ctx, b, disk)
			rows[0].Value = figure(d.Seconds(), err)
			if accel != "" {
				rows[0].Metric = "boot to banner under " + accel + " (OVMF, empty NVRAM)"
			}
			f, err := measureTunnel(ctx, b, disk, o.Progress)
			if f.Accel != "" {
				rows[1].Metric = "boot to tunnel established under " + f.Accel + " (X25519+ML-KEM)"
			}
			rows[1].Value, rows[2].Value, rows[2].Base = f.Up, f.Tunnel, f.Clear
			return wrap("lab", err)
		},
	}}
	return append(steps, update...), nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// buildTimes builds a fresh clone of the committed tree with empty Go and
// u-root caches (the kernel package stays cached: downloading is not
// building), then changes one appliance command and builds again. It sets
// each figure as it is measured.
func buildTimes(ctx context.Context, o Options, clean, rebuild *Figure) error {
	tmp, err := os.MkdirTemp("", "pqb-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	opts, err := cleanBuild(ctx, o, tmp)
	if err != nil {
		return err
	}

	fmt.Fprintln(o.Progress, "bench: clean build")
	start := time.Now()
	if _, err := firmware.Build(ctx, opts); err != nil {
		return fmt.Errorf("clean build: %w", err)
	}
	*clean = measured(time.Since(start).Seconds())

	fmt.Fprintln(o.Progress, "bench: rebuild after changing one command")
	edit := filepath.Join(opts.RepoDir, "services", "status", "bench_edit.go")
	if err := os.WriteFile(edit, []byte("package status\n\n// benchEdit changes the status command for the rebuild benchmark.\nconst benchEdit = \"edited\"\n"), 0o644); err != nil {
		return err
	}
	start = time.Now()
	if _, err := firmware.Build(ctx, opts); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	*rebuild = measured(time.Since(start).Seconds())
	return nil
}

// cleanBuild prepares, under tmp, a clean build of the committed tree: a
// clone with its own out directory, a cache holding only the fetched and
// unpacked packages, and an empty Go build cache given to the build through
// its options, so the process environment (and a GOCACHE the user set)
// stays as it is.
func cleanBuild(ctx context.Context, o Options, tmp string) (firmware.Options, error) {
	src := filepath.Join(tmp, "src")
	if out, err := exec.CommandContext(ctx, "git", "clone", "-q", o.RepoDir, src).CombinedOutput(); err != nil {
		return firmware.Options{}, fmt.Errorf("git clone: %w: %s", err, out)
	}
	cache := filepath.Join(tmp, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return firmware.Options{}, err
	}
	for _, d := range []string{"deb", "root"} {
		if err := os.Symlink(filepath.Join(o.CacheDir, d), filepath.Join(cache, d)); err != nil {
			return firmware.Options{}, err
		}
	}
	out := filepath.Join(src, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return firmware.Options{}, err
	}
	return firmware.Options{Board: o.Board, RepoDir: src, OutDir: out, CacheDir: cache, Progress: o.Progress,
		GoCache: filepath.Join(tmp, "gocache")}, nil
}

// coreInitramfs builds u-root's own core set with mkuimage and compresses it
// as the appliance's initramfs is compressed.
func coreInitramfs(o Options) (compressed, raw int64, err error) {
	archive, err := initramfs.URootArchive(o.CacheDir, o.RepoDir, initramfs.CoreCommands, o.Progress)
	if err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile(archive)
	if err != nil {
		return 0, 0, err
	}
	c, _, err := initramfs.Compress(b)
	return int64(len(c)), int64(len(b)), err
}

// bannerBoot times QEMU start to the boot banner.
func bannerBoot(ctx context.Context, b *boards.Board, img string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Config{Board: b, Image: img, NoReboot: true})
	if err != nil {
		return 0, "", err
	}
	defer vm.Stop()
	if _, err := vm.WaitLine(ctx, regexp.MustCompile(`^pqbranch .* slot=`)); err != nil {
		return 0, vm.Accel, fmt.Errorf("banner: %w", err)
	}
	return time.Since(vm.Started), vm.Accel, nil
}
