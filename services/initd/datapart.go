package initd

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pqbranch/pqbranch/images/layout"
	"github.com/pqbranch/pqbranch/update/slots"
)

// dataMountFlags: the data partition holds configuration and state, never
// programs; noatime spares the flash a write per read.
const dataMountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME

// mountData finds the data partition by its GPT name, gives it a file system
// on first boot and mounts it on dir. It never formats a partition that
// holds anything: a file system that fails to mount stays as it is, for
// someone to look at, and the appliance runs from its board default.
func mountData(ctx context.Context, dir string) error {
	// virtio-blk and USB disks probe asynchronously after their module loads.
	dev, err := waitPartition(ctx, "/sys/class/block", layout.Data, 10*time.Second)
	if err != nil {
		return err
	}
	created, err := ensureExt4(dev, layout.Data)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(os.Stderr, "init: data: first boot: created an ext4 file system on %s\n", dev)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := unix.Mount(dev, dir, "ext4", dataMountFlags, ""); err != nil {
		return fmt.Errorf("data: mount %s on %s: %w", dev, dir, err)
	}
	fmt.Fprintf(os.Stderr, "init: data: mounted %s (%s) on %s\n", dev, layout.Data, dir)
	return nil
}

// waitPartition polls findPartition until the partition shows up or the
// timeout passes.
func waitPartition(ctx context.Context, sysClassBlock, name string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		dev, err := findPartition(sysClassBlock, name)
		if err == nil && dev != "" {
			return dev, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("no partition named %q", name)
			}
			return "", fmt.Errorf("data: after %v: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// findPartition returns the device node of the partition whose GPT name is
// name, or "" if none has it yet (update/slots reads the kernel's uevent
// files). The name, not a device number, identifies it: disks enumerate
// in different orders on different boards.
func findPartition(sysClassBlock, name string) (string, error) {
	dev, err := slots.PartitionDev(sysClassBlock, "/dev", name)
	if err != nil {
		return "", fmt.Errorf("data: %w", err)
	}
	return dev, nil
}
