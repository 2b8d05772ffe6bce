// Package device is the fleet client library the device agent calls: one
// check-in (verify the repository's metadata, decide from the signed
// rollout state whether this device installs a release now) and, through
// update/fleet/report, the signed report of how the update ended.
package device

import (
	"context"
	"fmt"

	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// Checker checks in for one device.
type Checker struct {
	Repo   *repo.Client
	Device rollout.Device // ID, board and group from the device's identity; Version and Epoch from its running release
}

// Result is a check-in's outcome. With Install, TargetPath is where to
// download the bundle (relative to the repository base) and Target is what
// its bytes must hash to; the agent still waits for its maintenance window,
// and verifies the bundle's own hybrid signature as it streams.
type Result struct {
	rollout.Decision
	Target     repo.TargetFile
	TargetPath string
}

// Check refreshes the verified metadata and decides.
func (c *Checker) Check(ctx context.Context) (Result, error) {
	if err := c.Repo.Refresh(ctx); err != nil {
		return Result{}, fmt.Errorf("check-in of %s: %w", c.Device.ID, err)
	}
	t := c.Repo.Targets()
	r := Result{Decision: rollout.Decide(c.Device, t.Candidates(), t.Custom.Pins)}
	if r.Action == rollout.Install {
		f, path, err := c.Repo.Target(r.Decision.Target.Target)
		if err != nil {
			return Result{}, err
		}
		r.Target, r.TargetPath = f, path
	}
	return r, nil
}
