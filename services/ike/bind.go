package ike

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Bind carries a session's datagrams: the IKE port and the NAT-T port of
// RFC 3948, both towards the one edge. As wireguard-go's conn.Bind, it is
// the seam between the state machine and the network: connected UDP
// sockets in the appliance (DialUDP), memory in tests (bindtest).
type Bind interface {
	// Send writes one datagram from the IKE port or, with natPort, from the
	// NAT-T port, as is: the caller adds the non-ESP marker. It sends
	// nothing once ctx is done.
	Send(ctx context.Context, natPort bool, b []byte) error
	// Receive blocks for the next datagram on one port and returns it in a
	// slice of its own, exactly its size: a session reads few datagrams,
	// and a 64 KiB buffer per port for the largest one would be most of
	// what a handshake allocates. It returns an error wrapping
	// net.ErrClosed once the Bind is closed; other errors (ICMP reports on
	// a connected socket) are transient. It takes no ctx: its reader lives
	// as long as the Bind, not as one request, and Close is what ends it.
	Receive(natPort bool) (b []byte, from netip.AddrPort, err error)
	// LocalAddr and RemoteAddr are a port's two ends, for NAT detection
	// and the kernel's ESP-in-UDP SAs.
	LocalAddr(natPort bool) netip.AddrPort
	RemoteAddr(natPort bool) netip.AddrPort
	// Close ends both ports and unblocks Receive.
	Close() error
}

// BindConfig says where a Bind's two ports connect.
type BindConfig struct {
	Local                   netip.Addr // invalid: the kernel picks the source address
	LocalPort, LocalNATPort uint16     // 0: ephemeral
	Remote                  netip.AddrPort
	RemoteNATPort           uint16
	// ESPInUDP sets UDP_ENCAP on the NAT-T socket, so that the kernel
	// takes ESP off it and only IKE reaches Receive.
	ESPInUDP bool
}

// udpBind is two UDP sockets connected to the edge, so the kernel filters
// other sources and picks the local address.
type udpBind struct {
	ike, nat       *net.UDPConn
	ikeRaw, natRaw syscall.RawConn // for nextSize
}

// DialUDP opens the two sockets of c; it is Options.NewBind's default.
func DialUDP(ctx context.Context, c BindConfig) (Bind, error) {
	ike, err := dialUDP(ctx, c.Local, c.LocalPort, c.Remote, false)
	if err != nil {
		return nil, fmt.Errorf("IKE socket: %w", err)
	}
	nat, err := dialUDP(ctx, c.Local, c.LocalNATPort, netip.AddrPortFrom(c.Remote.Addr(), c.RemoteNATPort), c.ESPInUDP)
	if err != nil {
		ike.Close()
		return nil, fmt.Errorf("NAT-T socket: %w", err)
	}
	b := &udpBind{ike: ike, nat: nat}
	if b.ikeRaw, err = ike.SyscallConn(); err == nil {
		b.natRaw, err = nat.SyscallConn()
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func dialUDP(ctx context.Context, local netip.Addr, port uint16, remote netip.AddrPort, espInUDP bool) (*net.UDPConn, error) {
	var laddr *net.UDPAddr
	if local.IsValid() || port != 0 {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, port))
	}
	d := net.Dialer{LocalAddr: laddr, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if serr == nil && espInUDP {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP)
			}
		})
		return errors.Join(err, serr)
	}}
	if laddr == nil {
		d.LocalAddr = nil
	}
	c, err := d.DialContext(ctx, "udp", remote.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

func (b *udpBind) conn(natPort bool) *net.UDPConn {
	if natPort {
		return b.nat
	}
	return b.ike
}

// Send checks ctx only before writing: a UDP write does not wait for the
// peer, only, rarely, for room in the socket's buffer.
func (b *udpBind) Send(ctx context.Context, natPort bool, d []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := b.conn(natPort).Write(d)
	return err
}

func (b *udpBind) Receive(natPort bool) ([]byte, netip.AddrPort, error) {
	raw := b.ikeRaw
	if natPort {
		raw = b.natRaw
	}
	n, err := nextSize(raw)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	// At least one byte, so that reading consumes an empty datagram too.
	buf := make([]byte, max(n, 1))
	n, from, err := b.conn(natPort).ReadFromUDPAddrPort(buf)
	return buf[:n], from, err
}

// nextSize waits for the next datagram on the socket and returns its
// length, leaving it queued: recvfrom with MSG_PEEK and MSG_TRUNC and no
// buffer returns the real length of a UDP datagram.
func nextSize(raw syscall.RawConn) (int, error) {
	var n uintptr
	var errno syscall.Errno
	err := raw.Read(func(fd uintptr) bool {
		for {
			n, _, errno = unix.Syscall6(unix.SYS_RECVFROM, fd, 0, 0, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
			if errno != unix.EINTR {
				return errno != unix.EAGAIN // EAGAIN: wait until readable
			}
		}
	})
	switch {
	case err != nil:
		return 0, err // wraps net.ErrClosed once closed
	case errno != 0:
		return 0, errno // an ICMP report on the connected socket; it is consumed
	}
	return int(n), nil
}

func (b *udpBind) LocalAddr(natPort bool) netip.AddrPort {
	return b.conn(natPort).LocalAddr().(*net.UDPAddr).AddrPort()
}

func (b *udpBind) RemoteAddr(natPort bool) netip.AddrPort {
	return b.conn(natPort).RemoteAddr().(*net.UDPAddr).AddrPort()
}

func (b *udpBind) Close() error { return errors.Join(b.ike.Close(), b.nat.Close()) }
