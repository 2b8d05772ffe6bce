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
	"time"

	"golang.org/x/sys/unix"
)

// Paths inside the initramfs, written by the image build (package initramfs).
const (
	ReleaseFile = "/etc/pqbranch/release.json"
	ModulesFile = "/lib/modules/pqbranch.load"
)

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
	rel, err := ReadRelease(ReleaseFile)
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
	slot, err := BootSlot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "init: slot: %v\n", err)
	}
	fmt.Println(Banner(rel, slot))

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
	startAppliance(ctx, rel, slot)
	reap(ctx)
	return errors.New("init: reaper stopped")
}

// Banner is the one line a test or an operator looks for on the console.
func Banner(rel Release, slot string) string {
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
