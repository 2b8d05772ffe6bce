package ike

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

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
	// Receive waits for the next datagram on either port and returns it in
	// a slice of its own, exactly its size: a session reads few datagrams,
	// and a 64 KiB buffer for the largest one would be most of what a
	// handshake allocates. The session's own goroutine calls it, one call
	// at a time, with no reader goroutine in between, so an answer wakes
	// the session once and nothing else. Neither port's datagrams can hold
	// back the other's. It returns ctx's error once ctx is done,
	// os.ErrDeadlineExceeded at the deadline (zero: none; a passed one
	// returns at once, before any datagram, so timers are never starved by
	// a flood), and an error wrapping net.ErrClosed once the Bind is
	// closed. It reports no other error: an ICMP report on a connected
	// socket says nothing an unanswered request does not.
	Receive(ctx context.Context, deadline time.Time) (b []byte, natPort bool, from netip.AddrPort, err error)
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
// other sources and picks the local address, and an epoll instance that
// holds both: the session waits on that one descriptor, through Go's
// poller, for a datagram on either port, where a reader goroutine per
// socket would hand each datagram on and wake the session a second time.
type udpBind struct {
	ike, nat udpPort
	ready    *os.File // the epoll instance: readable while either socket is
	readyRaw syscall.RawConn
	natFirst bool // the port Receive looked at first last time
	closed   atomic.Bool
}

// udpPort is one of a udpBind's sockets, with its descriptor for recvNow's
// reads, which do not wait.
type udpPort struct {
	conn *net.UDPConn
	raw  syscall.RawConn
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
	b := &udpBind{ike: udpPort{conn: ike}, nat: udpPort{conn: nat}}
	if err := b.watch(); err != nil {
		b.Close()
		return nil, fmt.Errorf("waiting on both sockets: %w", err)
	}
	return b, nil
}

// watch creates the epoll instance and adds both sockets to it. Go's
// poller watches the instance itself, which Linux allows: it is readable
// while a socket in it is.
func (b *udpBind) watch() error {
	var err error
	for _, p := range []*udpPort{&b.ike, &b.nat} {
		if p.raw, err = p.conn.SyscallConn(); err != nil {
			return err
		}
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller and
	// deadlines work on it.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return os.NewSyscallError("fcntl", err)
	}
	b.ready = os.NewFile(uintptr(epfd), "ike-sockets")
	if b.readyRaw, err = b.ready.SyscallConn(); err != nil {
		return err
	}
	// A file Go's poller did not take has no deadlines: every Receive
	// would fail. Find out here, not in the session.
	if err := b.ready.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("epoll instance not pollable: %w", err)
	}
	for _, p := range []*udpPort{&b.ike, &b.nat} {
		var aerr error
		err := p.raw.Control(func(fd uintptr) {
			aerr = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
		})
		if err = errors.Join(err, aerr); err != nil {
			return os.NewSyscallError("epoll_ctl", err)
		}
	}
	return nil
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

func (b *udpBind) port(natPort bool) *udpPort {
	if natPort {
		return &b.nat
	}
	return &b.ike
}

// Send checks ctx only before writing: a UDP write does not wait for the
// peer, only, rarely, for room in the socket's buffer.
func (b *udpBind) Send(ctx context.Context, natPort bool, d []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := b.port(natPort).conn.Write(d)
	return err
}

func (b *udpBind) Receive(ctx context.Context, deadline time.Time) ([]byte, bool, netip.AddrPort, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, netip.AddrPort{}, err
	}
	// The deadline first, then ctx's: a ctx done in between still ends
	// the wait, as its deadline in the past is the last one set.
	if err := b.ready.SetReadDeadline(deadline); err != nil {
		return nil, false, netip.AddrPort{}, b.closedOr(err)
	}
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(fired)
			b.ready.SetReadDeadline(time.Unix(1, 0))
		})
		// Once started, it must be done before we return: a late one
		// would cut the next Receive's wait short.
		defer func() {
			if !stop() {
				<-fired
			}
		}()
	}
	for {
		var (
			d       []byte
			natPort bool
			res     recvResult
			rerr    error
		)
		err := b.readyRaw.Read(func(uintptr) bool {
			// The port read first takes turns, so that a flood on one
			// port cannot hold back the other's datagrams.
			b.natFirst = !b.natFirst
			for _, natPort = range []bool{b.natFirst, !b.natFirst} {
				if d, res, rerr = recvNow(b.port(natPort).raw); res != recvNone || rerr != nil {
					return true
				}
			}
			return false // neither had one: wait until the instance is readable
		})
		switch {
		case ctx.Err() != nil:
			return nil, false, netip.AddrPort{}, ctx.Err()
		case err != nil:
			return nil, false, netip.AddrPort{}, b.closedOr(err)
		case rerr != nil:
			return nil, false, netip.AddrPort{}, b.closedOr(rerr)
		case res == recvAgain:
			continue // Read checks the deadline again first
		}
		return d, natPort, b.RemoteAddr(natPort), nil
	}
}

// recvResult is what recvNow found on a socket.
type recvResult uint8

const (
	recvNone  recvResult = iota // nothing queued
	recvOK                      // a datagram, read
	recvAgain                   // a burst of errors: look again, as something may still be queued
)

// closedOr makes the error of a closed Bind the net.ErrClosed it
// promises: the epoll file's RawConn reports "use of closed file", which
// os does not export. Other errors (the deadline) pass.
func (b *udpBind) closedOr(err error) error {
	if b.closed.Load() || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("ike sockets: %w", net.ErrClosed)
	}
	return err
}

// recvNow reads the datagram queued on a socket, if there is one, without
// waiting. recvfrom with MSG_PEEK and MSG_TRUNC and no buffer returns the
// real length of a UDP datagram, so the buffer is made to its size. An
// ICMP report on the connected socket is consumed by the peek, and the
// socket looked at again. The error is the socket's being closed.
func recvNow(raw syscall.RawConn) (d []byte, res recvResult, err error) {
	res = recvAgain
	err = raw.Control(func(fd uintptr) {
		// Each error is consumed; a burst of them (ICMP reports) returns
		// recvAgain, so that Receive checks its deadline before looking
		// again: Go's poller would not wake it for a datagram already
		// queued.
		for range 8 {
			n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, 0, 0, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
			case unix.EAGAIN:
				res = recvNone
				return
			default:
				continue // EINTR, or an ICMP report, now consumed
			}
			// At least one byte, so that reading consumes an empty datagram too.
			buf := make([]byte, max(int(n), 1))
			m, rerr := unix.Read(int(fd), buf)
			if rerr != nil {
				continue // EINTR, or an ICMP report that came after the peek
			}
			d, res = buf[:m], recvOK
			return
		}
	})
	return d, res, err
}

func (b *udpBind) LocalAddr(natPort bool) netip.AddrPort {
	return b.port(natPort).conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (b *udpBind) RemoteAddr(natPort bool) netip.AddrPort {
	return b.port(natPort).conn.RemoteAddr().(*net.UDPAddr).AddrPort()
}

func (b *udpBind) Close() error {
	b.closed.Store(true)
	err := errors.Join(b.ike.conn.Close(), b.nat.conn.Close())
	if b.ready != nil {
		err = errors.Join(err, b.ready.Close())
	}
	return err
}
