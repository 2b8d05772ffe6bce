package config

import (
	"fmt"

	"github.com/pqbranch/pqbranch/services/internal/atomicfile"
)

// WriteFile stores b as the config file at path, mode 0600 (it holds
// pre-shared keys). The new file replaces any old one atomically and is on
// the medium when WriteFile returns, so a power cut leaves either the old
// file or the new one, never a torn one that would send the box back to its
// board default.
func WriteFile(path string, b []byte) error {
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
