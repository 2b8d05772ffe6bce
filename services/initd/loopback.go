package initd

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// upLoopback brings lo up. The kernel leaves it down until user space asks,
// and without it 127.0.0.1 does not exist: the status endpoint's loopback
// listener, which the `status` command reads, could not bind.
func upLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback: up: %w", err)
	}
	return nil
}
