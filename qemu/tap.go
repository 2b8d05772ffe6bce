package qemu

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Tap creates a tap interface called name inside namespace ns, brings it
// up, and returns its queue for Config.NICs. The tap lives in ns even though
// QEMU runs outside it, so a VM's WAN and LAN can sit in different
// namespaces. Closing the file (after QEMU exits) removes the interface.
func Tap(ns *netns.NS, name string) (*os.File, error) {
	var f *os.File
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("qemu: tap %s in %s: %w", name, ns.Name, err)
	}
	if _, err := ns.Run(context.Background(), "ip", "link", "set", name, "up"); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
