package qemu

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestPrepareStateReusesState: a second Start on the same state dir must
// find the first one's NVRAM and disk overlay, not fresh copies.
func TestPrepareStateReusesState(t *testing.T) {
	dir := t.TempDir()
	pristine := filepath.Join(dir, "OVMF_VARS.pristine")
	image := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(pristine, []byte("pristine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	state, err := stateDir(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	vars, overlay := filepath.Join(state, "OVMF_VARS.fd"), filepath.Join(state, "disk.qcow2")
	ctx := context.Background()
	if err := prepareState(ctx, pristine, vars, image, overlay); err != nil {
		t.Fatal(err)
	}
	// What the first boot changed.
	if err := os.WriteFile(vars, []byte("boot entries"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(overlay)
	if err != nil {
		t.Fatal(err)
	}
	if err := prepareState(ctx, pristine, vars, image, overlay); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(vars); string(b) != "boot entries" {
		t.Errorf("variable store reset to %q", b)
	}
	after, err := os.Stat(overlay)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("overlay recreated: %v", err)
	}
	vm := &VM{dir: state, keep: true}
	if err := vm.removeState(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(overlay); err != nil {
		t.Errorf("Stop removed the caller's state: %v", err)
	}
}
