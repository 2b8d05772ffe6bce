package ike

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// packet is one received datagram, the non-ESP marker already stripped.
type packet struct {
	b       []byte
	from    netip.AddrPort
	natPort bool
}

// transport is the session's side of a Bind: it sends IKE on the IKE port
// until NAT is detected, then on the NAT-T port behind the 4-byte zero
// non-ESP marker (RFC 3948), and receives on either port. It has no
// goroutine of its own: the session receives on its own goroutine, so that
// an answer wakes it directly.
type transport struct {
	bind        Bind
	floated     bool
	sent, recvd uint64
	bytesSent   uint64
	bytesRecvd  uint64
}

func newTransport(b Bind) *transport { return &transport{bind: b} }

// receive returns the next IKE datagram, waiting until deadline (zero:
// none): ok is false once the deadline has passed. Once ctx is done the
// error is ctx's own, whatever the Bind said, so that a stop is never
// taken for a lost peer; any other error is the Bind's being closed.
func (t *transport) receive(ctx context.Context, deadline time.Time) (p packet, ok bool, err error) {
	for {
		b, natPort, from, err := t.bind.Receive(ctx, deadline)
		switch {
		case ctx.Err() != nil:
			return packet{}, false, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return packet{}, false, nil
		case err != nil:
			return packet{}, false, fmt.Errorf("receive: %w", err)
		}
		if natPort {
			// A lone 0xff is a NAT keepalive; anything not starting with
			// the zero marker is ESP, which only the kernel should see.
			if len(b) < 4 || b[0]|b[1]|b[2]|b[3] != 0 {
				continue
			}
			b = b[4:]
		}
		t.recvd++
		t.bytesRecvd += uint64(len(b))
		return packet{b: b, from: from, natPort: natPort}, true, nil
	}
}

// float switches IKE to the NAT-T port (RFC 7296 2.23).
func (t *transport) float() { t.floated = true }

// send writes each datagram to the current destination.
func (t *transport) send(ctx context.Context, dgs [][]byte) error {
	for _, d := range dgs {
		n := len(d)
		if t.floated {
			d = append([]byte{0, 0, 0, 0}, d...)
		}
		if err := t.bind.Send(ctx, t.floated, d); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		t.sent++
		t.bytesSent += uint64(n)
	}
	return nil
}

func (t *transport) localAddr() netip.AddrPort  { return t.bind.LocalAddr(t.floated) }
func (t *transport) remoteAddr() netip.AddrPort { return t.bind.RemoteAddr(t.floated) }

// overhead is what IP and UDP (and the marker) add to an IKE message.
func (t *transport) overhead() int {
	n := 20 + 8
	if a := t.remoteAddr().Addr(); a.Is6() && !a.Is4In6() {
		n = 40 + 8
	}
	if t.floated {
		n += 4
	}
	return n
}

func (t *transport) close() { t.bind.Close() }
