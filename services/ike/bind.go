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
	// NAT-T port, as is: the caller adds the non-ESP marker.
	Send(natPort bool, b []byte) error
	// Receive blocks for the next datagram on one port and copies it into
	// buf. It returns an error wrapping net.ErrClosed once the Bind is
	// closed; other errors (ICMP reports on a connected socket) are
	// transient.
	Receive(natPort bool, buf []byte) (n int, from netip.AddrPort, err error)
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
	ike, nat *net.UDPConn
}

// DialUDP opens the two sockets of c; it is Options.NewBind's default.
func DialUDP(c BindConfig) (Bind, error) {
	ike, err := dialUDP(c.Local, c.LocalPort, c.Remote, false)
	if err != nil {
		return nil, fmt.Errorf("IKE socket: %w", err)
	}
	nat, err := dialUDP(c.Local, c.LocalNATPort, netip.AddrPortFrom(c.Remote.Addr(), c.RemoteNATPort), c.ESPInUDP)
	if err != nil {
		ike.Close()
		return nil, fmt.Errorf("NAT-T socket: %w", err)
	}
	return &udpBind{ike: ike, nat: nat}, nil
}

func dialUDP(local netip.Addr, port uint16, remote netip.AddrPort, espInUDP bool) (*net.UDPConn, error) {
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
	c, err := d.DialContext(context.Background(), "udp", remote.String())
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

func (b *udpBind) Send(natPort bool, d []byte) error {
	_, err := b.conn(natPort).Write(d)
	return err
}

func (b *udpBind) Receive(natPort bool, buf []byte) (int, netip.AddrPort, error) {
	return b.conn(natPort).ReadFromUDPAddrPort(buf)
}

func (b *udpBind) LocalAddr(natPort bool) netip.AddrPort {
	return b.conn(natPort).LocalAddr().(*net.UDPAddr).AddrPort()
}

func (b *udpBind) RemoteAddr(natPort bool) netip.AddrPort {
	return b.conn(natPort).RemoteAddr().(*net.UDPAddr).AddrPort()
}

func (b *udpBind) Close() error { return errors.Join(b.ike.Close(), b.nat.Close()) }
