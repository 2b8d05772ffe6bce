package ike

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// packet is one received datagram, the non-ESP marker already stripped.
type packet struct {
	b       []byte
	from    netip.AddrPort
	natPort bool
}

// transport owns the two UDP sockets of RFC 3948: IKE on 500 until NAT is
// detected, then IKE (behind a 4-byte zero non-ESP marker) and ESP on 4500.
// Both are connected to the peer, so the kernel filters other sources and
// picks the local address.
type transport struct {
	ike, nat    *net.UDPConn
	remote      netip.AddrPort // current destination
	remoteNAT   netip.AddrPort
	floated     bool
	in          chan packet
	wg          sync.WaitGroup
	sent, recvd uint64
	bytesSent   uint64
	bytesRecvd  uint64
}

type transportOptions struct {
	local                   netip.Addr
	localPort, localNATPort uint16
	remote                  netip.AddrPort
	remoteNATPort           uint16
	espInUDP                bool // set UDP_ENCAP so the kernel takes ESP off the 4500 socket
}

func newTransport(o transportOptions) (*transport, error) {
	remoteNAT := netip.AddrPortFrom(o.remote.Addr(), o.remoteNATPort)
	ikeConn, err := dial(o.local, o.localPort, o.remote, false)
	if err != nil {
		return nil, fmt.Errorf("IKE socket: %w", err)
	}
	natConn, err := dial(o.local, o.localNATPort, remoteNAT, o.espInUDP)
	if err != nil {
		ikeConn.Close()
		return nil, fmt.Errorf("NAT-T socket: %w", err)
	}
	t := &transport{ike: ikeConn, nat: natConn, remote: o.remote, remoteNAT: remoteNAT, in: make(chan packet, 64)}
	t.wg.Add(2)
	go t.read(ikeConn, false)
	go t.read(natConn, true)
	return t, nil
}

func dial(local netip.Addr, port uint16, remote netip.AddrPort, espInUDP bool) (*net.UDPConn, error) {
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

func (t *transport) read(c *net.UDPConn, natPort bool) {
	defer t.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors on a connected socket: the peer may come back
		}
		b := buf[:n]
		if natPort {
			// A lone 0xff is a NAT keepalive; anything not starting with the
			// zero marker is ESP, which only the kernel should see.
			if n < 4 || b[0]|b[1]|b[2]|b[3] != 0 {
				continue
			}
			b = b[4:]
		}
		p := packet{b: append([]byte(nil), b...), from: from, natPort: natPort}
		select {
		case t.in <- p:
		default: // a flood must not block the reader; IKE retransmits
		}
	}
}

// float switches IKE to the NAT-T port (RFC 7296 2.23).
func (t *transport) float() { t.floated = true }

// send writes each datagram to the current destination.
func (t *transport) send(dgs [][]byte) error {
	for _, d := range dgs {
		var err error
		if t.floated {
			_, err = t.nat.Write(append([]byte{0, 0, 0, 0}, d...))
		} else {
			_, err = t.ike.Write(d)
		}
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		t.sent++
		t.bytesSent += uint64(len(d))
	}
	return nil
}

func (t *transport) localAddr() netip.AddrPort {
	c := t.ike
	if t.floated {
		c = t.nat
	}
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (t *transport) remoteAddr() netip.AddrPort {
	if t.floated {
		return t.remoteNAT
	}
	return t.remote
}

// overhead is what IP and UDP (and the marker) add to an IKE message.
func (t *transport) overhead() int {
	n := 20 + 8
	if t.remote.Addr().Is6() && !t.remote.Addr().Is4In6() {
		n = 40 + 8
	}
	if t.floated {
		n += 4
	}
	return n
}

func (t *transport) close() {
	t.ike.Close()
	t.nat.Close()
	t.wg.Wait()
}
