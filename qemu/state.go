package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// stateDir returns the directory for a VM's overlay and variable store: the
// caller's, created if needed, or a fresh temporary one.
func stateDir(keep string) (string, error) {
	if keep == "" {
		dir, err := os.MkdirTemp("", "pqb-vm-")
		if err != nil {
			return "", fmt.Errorf("qemu: state dir: %w", err)
		}
		return dir, nil
	}
	if err := os.MkdirAll(keep, 0o700); err != nil {
		return "", fmt.Errorf("qemu: state dir: %w", err)
	}
	return keep, nil
}

// prepareState creates the UEFI variable store and the disk overlay unless a
// previous Start with the same state dir left them: reusing both is what
// makes a second boot the same box.
func prepareState(ctx context.Context, pristineVars, vars, image, overlay string) error {
	if missing(vars) {
		if err := copyFile(pristineVars, vars); err != nil {
			return fmt.Errorf("qemu: variable store: %w", err)
		}
	}
	if !missing(overlay) {
		return nil
	}
	abs, err := filepath.Abs(image)
	if err != nil {
		return fmt.Errorf("qemu: image path: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", "raw", overlay).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create overlay: %w: %s", err, out)
	}
	return nil
}

func missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// removeState deletes a temporary state dir; a caller's StateDir stays for
// the next Start.
func (vm *VM) removeState() error {
	if vm.keep {
		return nil
	}
	return os.RemoveAll(vm.dir)
}
