package initd

import (
	"context"
	"fmt"
	"os"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/appliance"
	"golang.org/x/sys/unix"
)

// dataDir is the data partition's mount point: the config lives there.
const dataDir = "/data"

// startAppliance starts the supervised userland (config, network, firewall,
// tunnel, update agent, status) in the background. It runs for the life of
// the machine, so it does not inherit ctx's cancellation: it ends through a
// power signal, after stopping everything cleanly.
func startAppliance(ctx context.Context, rel release.Release, slot string, opts appliance.Options) {
	opts.Release, opts.Version, opts.Slot = rel, rel.Version, slot
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
