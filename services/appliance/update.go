package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/update/agent"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

// UpdateSocket is where the update agent takes `pqbranch update` commands.
const UpdateSocket = "/run/pqbranch/update.sock"

// Updates is what the update agent needs from the box: init finds the
// boot disk's slots and opens the UEFI variables. Nil where the box has
// neither (a test on a host): the update service then says why it cannot
// run instead of pretending to.
type Updates struct {
	Disk agent.SlotIO
	Boot agent.BootControl
	// Order reads the firmware's boot order and next boot, for status.
	Order func() (order []string, next string, err error)
	Keys  hybrid.Keyring
	// RepoRoot is the release repository's root metadata the image ships
	// (release.RepoRootFile); nil when it ships none.
	RepoRoot []byte
	// DataDir keeps the agent's state on the data partition.
	DataDir string
	// Unavailable says why Disk or Boot is missing.
	Unavailable error
}

// runUpdate runs the update agent with the config in force.
func (a *Appliance) runUpdate(ctx context.Context) error {
	u := a.opts.Updates
	if a.opts.DataMounts == nil {
		return errors.New("updates unavailable: no data partition to keep the update state on")
	}
	cfg := a.store.Current().Update
	if err := os.MkdirAll(u.DataDir, 0o700); err != nil {
		return fmt.Errorf("update state: %w", err)
	}
	id, err := deviceID(filepath.Dir(u.DataDir))
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Options{
		DataDir: u.DataDir, Running: a.opts.Release, Slot: a.opts.Slot,
		Disk: u.Disk, Boot: u.Boot, Keys: u.Keys,
		Window: cfg.Parsed.Window, DeviceID: id,
		URL: cfg.URL, CA: cfg.Parsed.CA,
		Repository: cfg.Repository, RepoRoot: u.RepoRoot, ReportURL: cfg.ReportURL,
		Health: a.updateHealth, TrialTimeout: cfg.Parsed.TrialTimeout,
		Reboot: a.reboot,
		Log:    a.log,
		Socket: UpdateSocket,
	})
	if err != nil {
		return err
	}
	a.agent.Store(ag)
	defer a.agent.Store(nil)
	return ag.Run(ctx)
}

// updateHealth is the trial's verdict: the new slot is committed only when
// its config loaded, every other service runs and the tunnel (when one is
// configured) is established.
func (a *Appliance) updateHealth() (bool, string) {
	if a.opts.Release.Fault == release.FaultUnhealthy {
		return false, "fault injected: this test image never becomes healthy"
	}
	if cs := a.configState(); !cs.Loaded || cs.Defaults || len(cs.Errors) > 0 {
		return false, "config not in force: " + strings.Join(cs.Errors, "; ")
	}
	if a.sup == nil {
		return false, "services not started"
	}
	for _, st := range a.sup.States() {
		if st.Name != "update" && st.State != supervise.Running {
			return false, fmt.Sprintf("service %s is %s: %s", st.Name, st.State, st.LastError)
		}
	}
	if a.store.Current().Tunnel != nil && a.opts.Tunnel != nil {
		if ts := a.opts.Tunnel.Status(); ts.State != status.TunnelEstablished {
			return false, fmt.Sprintf("tunnel %s %s", ts.State, ts.LastError)
		}
	}
	return true, ""
}

// reboot asks PID 1 for a clean reboot: services stop, /data is synced and
// unmounted, then the machine resets.
func (a *Appliance) reboot(reason string) error {
	if !a.opts.PowerSignals {
		return fmt.Errorf("reboot for %s: this process is not init", reason)
	}
	a.log.Warn("update: rebooting", "reason", reason)
	return unix.Kill(os.Getpid(), unix.SIGTERM)
}

// deviceID is the box's stable identity, made once on the data partition:
// it survives updates and rollbacks, and it spreads a fleet's reboots over
// the maintenance window.
func deviceID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "device-id")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) == 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("device id: %w", err)
	}
	var raw [16]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("device id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("device id: %w", err)
	}
	return id, nil
}
