// Package freebind listens on addresses an interface does not have yet.
//
// At boot the services start while the network service is still assigning
// the LAN addresses; a plain bind then fails with "cannot assign requested
// address" and the service restarts in a loop until the address appears.
// IP_FREEBIND lets the bind succeed at once, and the socket receives as
// soon as the address is there.
package freebind

import (
	"net"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenConfig returns a ListenConfig whose sockets are bound with
// IP_FREEBIND (IPV6_FREEBIND for IPv6 addresses).
func ListenConfig() *net.ListenConfig {
	return &net.ListenConfig{Control: control}
}

func control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") || strings.HasPrefix(address, "[") {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
