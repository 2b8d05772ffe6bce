// Package bindtest is an in-memory ike.Bind, as wireguard-go's conn/bindtest
// is for its conn.Bind: a session's datagrams go to a Peer that the test
// reads and writes, with no sockets, so the state machine can be driven
// and observed without the network.
//
// It imports nothing of ike (ike's own tests use it); a test hands it to
// the session with
//
//	opt.NewBind = func(context.Context, ike.BindConfig) (ike.Bind, error) { return b, nil }
package bindtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Addrs are the four ends: the session's IKE and NAT-T ports and the
// edge's.
type Addrs struct {
	Local, LocalNAT, Remote, RemoteNAT netip.AddrPort
}

// DefaultAddrs are documentation addresses on the standard ports.
var DefaultAddrs = Addrs{
	Local:     netip.MustParseAddrPort("192.0.2.2:500"),
	LocalNAT:  netip.MustParseAddrPort("192.0.2.2:4500"),
	Remote:    netip.MustParseAddrPort("192.0.2.1:500"),
	RemoteNAT: netip.MustParseAddrPort("192.0.2.1:4500"),
}

// queueLen is how many datagrams wait in each direction and port before
// more are dropped, as a full socket buffer drops them.
const queueLen = 256

// Datagram is one datagram on one port.
type Datagram struct {
	NATPort bool
	B       []byte
}

// link is the shared state of a Bind and its Peer.
type link struct {
	addrs  Addrs
	toBind [2]chan []byte // by port: 0 IKE, 1 NAT-T
	toPeer chan Datagram
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	loss    func(toEdge bool, d Datagram) bool
	handler func(d Datagram)
}

// lost reports whether the loss function takes d.
func (l *link) lost(toEdge bool, d Datagram) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loss != nil && l.loss(toEdge, d)
}

// Bind is the session's end; it implements ike.Bind.
type Bind struct{ l *link }

// Peer is the edge's end.
type Peer struct{ l *link }

// New connects a Bind to a Peer.
func New(a Addrs) (*Bind, *Peer) {
	l := &link{addrs: a, toPeer: make(chan Datagram, queueLen), done: make(chan struct{})}
	for i := range l.toBind {
		l.toBind[i] = make(chan []byte, queueLen)
	}
	return &Bind{l}, &Peer{l}
}

func port(natPort bool) int {
	if natPort {
		return 1
	}
	return 0
}

// errClosed wraps net.ErrClosed, which the session takes as the end of a
// Bind.
var errClosed = fmt.Errorf("bindtest: %w", net.ErrClosed)

// Send queues b for the Peer; a full queue drops it silently, as UDP would.
// Nothing is queued once ctx is done.
func (b *Bind) Send(ctx context.Context, natPort bool, d []byte) error {
	select {
	case <-b.l.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	default:
	}
	dg := Datagram{NATPort: natPort, B: append([]byte(nil), d...)}
	if b.l.lost(true, dg) {
		return nil
	}
	b.l.mu.Lock()
	h := b.l.handler
	b.l.mu.Unlock()
	if h != nil {
		h(dg)
		return nil
	}
	select {
	case b.l.toPeer <- dg:
	default:
	}
	return nil
}

// Receive returns the Peer's next datagram to either port, the copy
// Peer.Send made, as ike.Bind's Receive does: ctx's error once it is done,
// os.ErrDeadlineExceeded at the deadline (a passed one at once, before any
// datagram), net.ErrClosed once closed.
func (b *Bind) Receive(ctx context.Context, deadline time.Time) ([]byte, bool, netip.AddrPort, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, netip.AddrPort{}, err
	}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, false, netip.AddrPort{}, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-b.l.done:
		return nil, false, netip.AddrPort{}, errClosed
	case <-ctx.Done():
		return nil, false, netip.AddrPort{}, ctx.Err()
	case <-timeout:
		return nil, false, netip.AddrPort{}, os.ErrDeadlineExceeded
	case d := <-b.l.toBind[0]:
		return d, false, b.RemoteAddr(false), nil
	case d := <-b.l.toBind[1]:
		return d, true, b.RemoteAddr(true), nil
	}
}

// LocalAddr is the session's port.
func (b *Bind) LocalAddr(natPort bool) netip.AddrPort {
	if natPort {
		return b.l.addrs.LocalNAT
	}
	return b.l.addrs.Local
}

// RemoteAddr is the edge's port.
func (b *Bind) RemoteAddr(natPort bool) netip.AddrPort {
	if natPort {
		return b.l.addrs.RemoteNAT
	}
	return b.l.addrs.Remote
}

// Close ends the link for both sides; it may be called more than once.
func (b *Bind) Close() error {
	b.l.once.Do(func() { close(b.l.done) })
	return nil
}

// Closed reports whether the session closed its Bind.
func (p *Peer) Closed() bool {
	select {
	case <-p.l.done:
		return true
	default:
		return false
	}
}

// Send delivers d to the session's port, from the edge's port of the same
// kind, unless the loss function takes it; a full queue drops it.
func (p *Peer) Send(natPort bool, d []byte) error {
	if p.Closed() {
		return errClosed
	}
	dg := Datagram{NATPort: natPort, B: append([]byte(nil), d...)}
	if p.l.lost(false, dg) {
		return nil
	}
	select {
	case p.l.toBind[port(natPort)] <- dg.B:
	default:
	}
	return nil
}

// Addrs are the link's addresses; the Peer is at Remote and RemoteNAT.
func (p *Peer) Addrs() Addrs { return p.l.addrs }

// SetLoss makes the link drop every datagram for which lose returns true,
// towards the edge (toEdge) or the session; nil loses nothing. lose is
// called with the link's lock held, one datagram at a time, so it may
// keep counters.
func (p *Peer) SetLoss(lose func(toEdge bool, d Datagram) bool) {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	p.l.loss = lose
}

// SetHandler hands each datagram the session sends to h, inside the
// session's Send and on its goroutine, instead of queueing it for Recv; nil
// queues again. A remote edge costs the sender nothing but the send: with
// a handler, neither does this one, where a Recv loop in a goroutine of its
// own has every send wake that goroutine. h must not block; what it sends
// back with Peer.Send is queued as usual.
func (p *Peer) SetHandler(h func(d Datagram)) {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	p.l.handler = h
}

// Recv returns the next datagram the session sent, waiting until ctx ends.
// Datagrams sent before the Bind was closed can still be read.
func (p *Peer) Recv(ctx context.Context) (Datagram, error) {
	select {
	case d := <-p.l.toPeer:
		return d, nil
	default:
	}
	select {
	case d := <-p.l.toPeer:
		return d, nil
	case <-ctx.Done():
		return Datagram{}, ctx.Err()
	}
}

// Pending is how many datagrams of the session wait to be read.
func (p *Peer) Pending() int { return len(p.l.toPeer) }
