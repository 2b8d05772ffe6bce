package config

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile stores b as the config file at path, mode 0600 (it holds
// pre-shared keys). The new file replaces any old one atomically and is on
// the medium when WriteFile returns, so a power cut leaves either the old
// file or the new one, never a torn one that would send the box back to its
// board default.
func WriteFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".pqbranch-*.json")
	if err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	// The rename itself lives in the directory.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("config: write %s: sync dir: %w", path, err)
	}
	return nil
}
