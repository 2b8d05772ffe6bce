package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
)

// defaultImage is what `make image` builds; `make test` builds it first.
func defaultImage(t *testing.T) (string, *boards.Board) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	img := filepath.Join(filepath.Dir(file), "..", "out", boards.Default, "disk.img")
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("%v: run `make image` first (make test does)", err)
	}
	b, err := boards.Load(boards.Default)
	if err != nil {
		t.Fatal(err)
	}
	return img, b
}

// TestBootBannerFromEmptyNVRAM boots the default image as a freshly flashed
// box: a pristine OVMF variable store with no boot entries, so the firmware
// must find slot A through the removable-media path.
func TestBootBannerFromEmptyNVRAM(t *testing.T) {
	img, b := defaultImage(t)
	m, err := firmware.ReadManifest(filepath.Join(filepath.Dir(img), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Board: b, Image: img, NoReboot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	want := regexp.MustCompile(`^pqbranch ` + regexp.QuoteMeta(m.Release.Version) + ` board=qemu-x86_64 slot=A$`)
	line, err := vm.WaitLine(ctx, want)
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, vm.Console())
	}
	t.Logf("%s after %.1fs under %s", line, time.Since(vm.Started).Seconds(), vm.Accel)
	if _, err := vm.WaitLine(ctx, regexp.MustCompile(`init: loaded \d+ kernel modules`)); err != nil {
		t.Errorf("modules: %v\nconsole:\n%s", err, vm.Console())
	}
	if strings.Contains(vm.Console(), "init: modules:") {
		t.Errorf("some kernel modules failed to load:\n%s", vm.Console())
	}
}
