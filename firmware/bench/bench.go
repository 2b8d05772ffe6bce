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

// Row is one line of the table.
type Row struct {
	Metric   string
	Value    float64
	Unit     string
	Baseline string
	Base     float64 // 0 when there is no baseline
}

// Options select the board and where the caches are.
type Options struct {
	Board    string
	RepoDir  string
	CacheDir string
	Progress io.Writer
	// Only, when "update", measures just the update rows.
	Only string
}

// Run measures everything and returns the table rows.
func Run(ctx context.Context, o Options) ([]Row, error) {
	var rows []Row
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
	switch o.Only {
	case "":
	case "update":
		return updateRows(ctx, o, b, dir, m)
	default:
		return nil, fmt.Errorf("bench: -only %q: expected \"update\"", o.Only)
	}
	clean, rebuild, err := buildTimes(ctx, o)
	if err != nil {
		return nil, err
	}
	rows = append(rows,
		Row{Metric: "clean build (empty Go and u-root caches)", Value: clean.Seconds(), Unit: "s", Baseline: "gokrazy, measured elsewhere", Base: 58},
		Row{Metric: "rebuild after one command changed", Value: rebuild.Seconds(), Unit: "s", Baseline: "gokrazy, measured elsewhere", Base: 3.9},
	)

	coreSize, coreRaw, err := coreInitramfs(o)
	if err != nil {
		return nil, err
	}
	rows = append(rows,
		Row{Metric: "initramfs, compressed (" + m.Initramfs.Compression + ")", Value: mib(m.Initramfs.Size), Unit: "MiB", Baseline: "u-root core set, compressed the same way", Base: mib(coreSize)},
		Row{Metric: "initramfs, uncompressed", Value: mib(m.Initramfs.RawSize), Unit: "MiB", Baseline: "u-root core set, uncompressed", Base: mib(coreRaw)},
	)
	rows = append(rows,
		Row{Metric: "disk image, qcow2 (what is stored)", Value: mib(m.Artifacts["disk.qcow2"].Size), Unit: "MiB", Baseline: "gokrazy image, measured elsewhere", Base: 51},
		Row{Metric: "disk image, raw (both slots and data)", Value: mib(m.Artifacts["disk.img"].Size), Unit: "MiB"},
		Row{Metric: "unified kernel image (one slot)", Value: mib(m.Artifacts["pqbranch.efi"].Size), Unit: "MiB"},
	)

	floor, err := floorBoot(ctx, o, b)
	if err != nil {
		return nil, err
	}
	banner, accel, err := bannerBoot(ctx, b, filepath.Join(dir, "disk.img"))
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{Metric: "boot to banner under " + accel + " (OVMF, empty NVRAM)", Value: banner.Seconds(), Unit: "s",
		Baseline: "floor: same kernel, init that powers off at once", Base: floor.Seconds()})

	f, err := measureTunnel(ctx, b, filepath.Join(dir, "disk.img"), o.Progress)
	if err != nil {
		return nil, err
	}
	rows = append(rows,
		Row{Metric: "boot to tunnel established under " + f.Accel + " (X25519+ML-KEM)", Value: f.Up.Seconds(), Unit: "s",
			Baseline: "floor: same kernel, init that powers off at once", Base: floor.Seconds()},
		Row{Metric: "TCP LAN -> dc through the tunnel (10 MiB, median)", Value: f.Tunnel, Unit: "Mbit/s",
			Baseline: "same VM and path routed in clear (no tunnel)", Base: f.Clear})

	up, err := updateRows(ctx, o, b, dir, m)
	if err != nil {
		return nil, err
	}
	return append(rows, up...), nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// buildTimes builds a fresh clone of the committed tree with empty Go and
// u-root caches (the kernel package stays cached: downloading is not
// building), then changes one appliance command and builds again.
func buildTimes(ctx context.Context, o Options) (clean, rebuild time.Duration, err error) {
	tmp, err := os.MkdirTemp("", "pqb-bench-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if out, err := exec.CommandContext(ctx, "git", "clone", "-q", o.RepoDir, src).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("git clone: %w: %s", err, out)
	}
	cache := filepath.Join(tmp, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return 0, 0, err
	}
	for _, d := range []string{"deb", "root"} {
		if err := os.Symlink(filepath.Join(o.CacheDir, d), filepath.Join(cache, d)); err != nil {
			return 0, 0, err
		}
	}
	os.Setenv("GOCACHE", filepath.Join(tmp, "gocache"))
	defer os.Unsetenv("GOCACHE")
	out := filepath.Join(src, "out")
	os.MkdirAll(out, 0o755)
	opts := firmware.Options{Board: o.Board, RepoDir: src, OutDir: out, CacheDir: cache, Progress: o.Progress}

	fmt.Fprintln(o.Progress, "bench: clean build")
	start := time.Now()
	if _, err := firmware.Build(ctx, opts); err != nil {
		return 0, 0, err
	}
	clean = time.Since(start)

	fmt.Fprintln(o.Progress, "bench: rebuild after changing one command")
	edit := filepath.Join(src, "services", "status", "bench_edit.go")
	if err := os.WriteFile(edit, []byte("package status\n\n// benchEdit changes the status command for the rebuild benchmark.\nconst benchEdit = \"edited\"\n"), 0o644); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	_, err = firmware.Build(ctx, opts)
	if err != nil {
		return 0, 0, err
	}
	rebuild = time.Since(start)
	os.Remove(edit)
	return clean, rebuild, nil
}

// coreInitramfs builds u-root's own core set with mkuimage and compresses it
// as the appliance's initramfs is compressed.
func coreInitramfs(o Options) (compressed, raw int64, err error) {
	archive, err := initramfs.URootArchive(o.CacheDir, initramfs.CoreCommands, o.Progress)
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
		return 0, "", err
	}
	return time.Since(vm.Started), vm.Accel, nil
}

// Format writes the rows as a table.
func Format(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "| %-52s | %12s | %-50s | %12s | %7s |\n", "metric", "pqbranch", "baseline", "baseline", "ratio")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|\n", dashes(54), dashes(14), dashes(52), dashes(14), dashes(9))
	for _, r := range rows {
		base, ratio := "", ""
		if r.Base > 0 {
			base = fmt.Sprintf("%.1f %s", r.Base, r.Unit)
			ratio = fmt.Sprintf("%.2f", r.Value/r.Base)
		}
		fmt.Fprintf(w, "| %-52s | %12s | %-50s | %12s | %7s |\n", r.Metric, fmt.Sprintf("%.1f %s", r.Value, r.Unit), r.Baseline, base, ratio)
	}
}

func dashes(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = '-'
	}
	return string(b)
}
