package initd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/appliance"
	"github.com/pqbranch/pqbranch/services/provision"
	"github.com/pqbranch/pqbranch/update/agent"
	"github.com/pqbranch/pqbranch/update/efiboot"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/slots"
	"golang.org/x/sys/unix"
)

// dataDir is the data partition's mount point: the config lives there.
const dataDir = "/data"

// efivars is where the kernel exposes the UEFI variables.
const efivars = "/sys/firmware/efi/efivars"

// startAppliance starts the supervised userland (config, network, firewall,
// tunnel, update agent, status) in the background. It runs for the life of
// the machine, so it does not inherit ctx's cancellation: it ends through a
// power signal, after stopping everything cleanly.
func startAppliance(ctx context.Context, rel release.Release, slot string, opts appliance.Options) {
	opts.Release, opts.Version, opts.Slot = rel, rel.Version, slot
	opts.Updates = updates(slot)
	// A USB stick labelled PQBRANCH may bring the site's config.
	opts.Provision = &provision.Provisioner{}
	opts.PowerSignals = os.Getpid() == 1
	opts.SetHostname = opts.PowerSignals
	if rel.Profile == "dev" {
		opts.FaultSocket = appliance.FaultSocket
	}
	var st, parent unix.Stat_t
	if unix.Stat(dataDir, &st) == nil && unix.Stat("/", &parent) == nil && st.Dev != parent.Dev {
		opts.DataMounts = []string{dataDir}
	}
	app, err := appliance.New(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "init: appliance: %v\n", err)
		return
	}
	go func() {
		if err := app.Run(context.WithoutCancel(ctx)); err != nil {
			app.Log().Error("appliance stopped", "err", err)
		}
	}()
}

// updates finds what the update agent steers: the boot disk's slots and
// the UEFI boot variables. What is missing is reported, not guessed.
func updates(slot string) *appliance.Updates {
	u := &appliance.Updates{DataDir: filepath.Join(dataDir, "update")}
	keys, err := hybrid.ReadKeyring(release.KeysFile)
	if err != nil {
		u.Unavailable = err
		return u
	}
	u.Keys = keys
	// Optional: only a box that checks in with a release repository needs
	// it, and the agent says so when it is missing.
	if root, err := os.ReadFile(release.RepoRootFile); err == nil {
		u.RepoRoot = root
	}
	disk, err := slots.Find("/sys/class/block")
	if err != nil {
		u.Unavailable = err
		return u
	}
	if _, err := os.Stat(efivars); err != nil {
		u.Unavailable = fmt.Errorf("no UEFI variables: %w", err)
		return u
	}
	mgr := &efiboot.Manager{Vars: efiboot.EFIVarFS(efivars), Slots: disk.BootPartitions(), Booted: slot}
	u.Disk, u.Boot = agent.DiskSlots{Disk: disk}, mgr
	u.Order = func() ([]string, string, error) {
		order, err := mgr.Order()
		if err != nil {
			return nil, "", err
		}
		next, err := mgr.Next()
		return order, next, err
	}
	return u
}
