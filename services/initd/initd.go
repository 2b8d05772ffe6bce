// Package initd is the appliance's PID 1: it mounts the kernel file systems,
// loads the board's kernel modules, prints the boot banner and hands over to
// the services.
package initd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/appliance"
	"github.com/pqbranch/pqbranch/services/watchdog"
)

// ModulesFile is the module load list the image build writes (package initramfs).
const ModulesFile = "/lib/modules/pqbranch.load"

// Main runs init. It only returns on a fatal error; the kernel panics when
// PID 1 exits, and the board's panic= command line option then resets the box
// so that an unbootable trial slot falls back to the committed one.
func Main(ctx context.Context, args []string) error {
	// The multi-call binary cancels ctx on SIGTERM and SIGINT. For PID 1
	// those are power requests that the appliance carries out (stop, sync,
	// unmount, reboot); ending here instead would panic the kernel with
	// /data unsynced.
	ctx = context.WithoutCancel(ctx)
	if err := mountAll(kernelMounts); err != nil {
		fmt.Fprintf(os.Stderr, "init: %v\n", err)
	}
	rel, err := release.Read(release.File)
	if err != nil {
		return err
	}
	if n, err := LoadModules(ModulesFile); err != nil {
		fmt.Fprintf(os.Stderr, "init: modules: %v\n", err)
	} else {
		fmt.Fprintf(os.Stderr, "init: loaded %d kernel modules\n", n)
	}
	if err := mountAll(moduleMounts); err != nil {
		fmt.Fprintf(os.Stderr, "init: %v\n", err)
	}
	if err := unix.Sethostname([]byte("pqbranch")); err != nil {
		fmt.Fprintf(os.Stderr, "init: hostname: %v\n", err)
	}
	// The watchdog is armed before anything that could hang: an init or
	// userland that stalls from here on (a bad trial slot) is reset, and
	// the firmware then boots the committed slot.
	opts, optsErr := appliance.ImageOptions(filepath.Dir(release.BoardFile))
	if optsErr != nil {
		fmt.Fprintf(os.Stderr, "init: %v\n", optsErr)
	} else if opts.Watchdog != "" {
		if opts.WatchdogDevice, err = watchdog.Open(opts.Watchdog); err != nil {
			fmt.Fprintf(os.Stderr, "init: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "init: watchdog armed\n")
		}
	}
	slot, err := BootSlot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "init: slot: %v\n", err)
	}
	fmt.Println(Banner(rel, slot))
	injectFault(rel.Fault)

	// The config lives on /data: it must be mounted before the appliance
	// starts, which otherwise runs from the board default in RAM.
	if err := mountData(ctx, dataDir); err != nil {
		fmt.Fprintf(os.Stderr, "init: %v\n", err)
	}
	if err := upLoopback(); err != nil {
		fmt.Fprintf(os.Stderr, "init: %v\n", err)
	}
	if rel.Profile == "dev" {
		go consoleShell(ctx)
	}
	if optsErr == nil {
		startAppliance(ctx, rel, slot, opts)
	}
	reap(ctx)
	return errors.New("init: reaper stopped")
}

// Banner is the one line a test or an operator looks for on the console.
func Banner(rel release.Release, slot string) string {
	if slot == "" {
		slot = "?"
	}
	return fmt.Sprintf("pqbranch %s board=%s slot=%s", rel.Version, rel.Board, slot)
}

// consoleShell keeps a debugging shell on the console in dev images.
func consoleShell(ctx context.Context) {
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, "/bbin/gosh")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "PATH=/bin:/bbin", "HOME=/")
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "init: shell: %v\n", err)
		}
		time.Sleep(time.Second)
	}
}

// injectFault makes a dev test image fail the way a bad release does, so
// the rollback tests exercise the real paths: a kernel panic (panic= resets
// the box) or an init that hangs with the watchdog armed. A prod image
// never carries a fault (release.Validate refuses it).
func injectFault(fault string) {
	switch fault {
	case release.FaultPanic:
		fmt.Fprintln(os.Stderr, "init: fault injected: panicking the kernel")
		if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
			fmt.Fprintf(os.Stderr, "init: fault: %v\n", err)
		}
	case release.FaultHang:
		fmt.Fprintln(os.Stderr, "init: fault injected: hanging with the watchdog armed")
		select {}
	}
}
