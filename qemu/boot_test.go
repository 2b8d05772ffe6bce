package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
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

func TestBootDebug(t *testing.T) {
	img, b := defaultImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Board: b, Image: img, NoReboot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	line, err := vm.WaitLine(ctx, regexp.MustCompile(`^pqbranch `))
	t.Logf("banner after %v: %q (%v)", time.Since(vm.Started), line, err)
	time.Sleep(5 * time.Second)
	vm.Send("dmesg\r")
	time.Sleep(8 * time.Second)
	t.Log(vm.Console())
}
