package bindtest

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

func TestBothWays(t *testing.T) {
	b, p := New(DefaultAddrs)
	defer b.Close()
	for _, nat := range []bool{false, true} {
		if err := b.Send(t.Context(), nat, []byte("to edge")); err != nil {
			t.Fatal(err)
		}
		d, err := p.Recv(t.Context())
		if err != nil || d.NATPort != nat || string(d.B) != "to edge" {
			t.Fatalf("peer got %+v, %v; want %q on NAT port %v", d, err, "to edge", nat)
		}
		if err := p.Send(nat, []byte("to branch")); err != nil {
			t.Fatal(err)
		}
		d2, from, err := b.Receive(nat)
		if err != nil || string(d2) != "to branch" || from != b.RemoteAddr(nat) {
			t.Fatalf("bind got %q from %v, %v", d2, from, err)
		}
	}
	// The other port has nothing: a datagram arrives only on its own port.
	if err := p.Send(true, []byte("nat only")); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		d, _, err := b.Receive(false)
		if err == nil {
			got <- d
		}
		close(got)
	}()
	select {
	case d := <-got:
		t.Fatalf("IKE port received %q sent to the NAT-T port", d)
	case <-time.After(50 * time.Millisecond):
	}
	b.Close()
	if _, ok := <-got; ok {
		t.Fatal("Receive returned data after Close")
	}
}

// Close unblocks Receive with net.ErrClosed, which ends the session's
// readers, and later sends fail; what the session sent before stays
// readable.
func TestClose(t *testing.T) {
	b, p := New(DefaultAddrs)
	if err := b.Send(t.Context(), false, []byte("last words")); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := b.Receive(false)
		errc <- err
	}()
	b.Close()
	b.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	if err := b.Send(t.Context(), false, []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := p.Send(false, []byte("x")); !errors.Is(err, net.ErrClosed) || !p.Closed() {
		t.Fatalf("Peer.Send after Close: %v", err)
	}
	if d, err := p.Recv(t.Context()); err != nil || string(d.B) != "last words" {
		t.Fatalf("datagram sent before Close: %+v, %v", d, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := p.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with nothing sent: %v", err)
	}
}

// TestSendAfterContextDone: a Send whose ctx is done queues nothing.
func TestSendAfterContextDone(t *testing.T) {
	b, p := New(DefaultAddrs)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Send(ctx, false, []byte("late")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled ctx: %v, want context.Canceled", err)
	}
	if n := p.Pending(); n != 0 {
		t.Fatalf("%d datagrams queued by a cancelled Send", n)
	}
}

// A full queue drops, as a socket buffer does, instead of blocking the
// sender; the data of a datagram is copied, not aliased.
func TestFullQueueDrops(t *testing.T) {
	b, p := New(DefaultAddrs)
	defer b.Close()
	d := []byte("0")
	for range queueLen + 10 {
		if err := b.Send(t.Context(), false, d); err != nil {
			t.Fatal(err)
		}
	}
	d[0] = 'x'
	if n := p.Pending(); n != queueLen {
		t.Fatalf("%d datagrams queued, want %d", n, queueLen)
	}
	if got, _ := p.Recv(t.Context()); string(got.B) != "0" {
		t.Fatalf("queued datagram changed with the sender's buffer: %q", got.B)
	}
}

// SetLoss drops what its function picks, in each direction.
func TestLoss(t *testing.T) {
	b, p := New(DefaultAddrs)
	defer b.Close()
	var seen []bool
	p.SetLoss(func(toEdge bool, d Datagram) bool {
		seen = append(seen, toEdge)
		return string(d.B) == "lose"
	})
	for _, s := range []string{"lose", "keep"} {
		if err := b.Send(t.Context(), false, []byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := p.Send(false, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := p.Recv(t.Context()); string(d.B) != "keep" || p.Pending() != 0 {
		t.Fatalf("edge got %q and %d more, want only %q", d.B, p.Pending(), "keep")
	}
	if d, _, _ := b.Receive(false); string(d) != "keep" {
		t.Fatalf("session got %q, want %q", d, "keep")
	}
	if want := []bool{true, false, true, false}; !slices.Equal(seen, want) {
		t.Fatalf("loss saw directions %v, want %v", seen, want)
	}
	p.SetLoss(nil)
	if err := b.Send(t.Context(), false, []byte("lose")); err != nil || p.Pending() != 1 {
		t.Fatalf("with no loss: %v, %d pending", err, p.Pending())
	}
}

// SetHandler delivers the session's datagrams inside Send, after the loss
// function and copied from the sender's buffer; nil queues them again.
func TestHandler(t *testing.T) {
	b, p := New(DefaultAddrs)
	defer b.Close()
	var got []Datagram
	p.SetHandler(func(d Datagram) { got = append(got, d) })
	p.SetLoss(func(toEdge bool, d Datagram) bool { return string(d.B) == "lose" })
	buf := []byte("keep")
	for _, d := range [][]byte{buf, []byte("lose")} {
		if err := b.Send(t.Context(), true, d); err != nil {
			t.Fatal(err)
		}
	}
	buf[0] = 'x'
	if len(got) != 1 || string(got[0].B) != "keep" || !got[0].NATPort || p.Pending() != 0 {
		t.Fatalf("handler got %+v with %d queued, want only %q on the NAT-T port", got, p.Pending(), "keep")
	}
	p.SetHandler(nil)
	if err := b.Send(t.Context(), false, []byte("queued")); err != nil || p.Pending() != 1 || len(got) != 1 {
		t.Fatalf("without a handler: %v, %d queued, %d handled", err, p.Pending(), len(got))
	}
}

// What the Peer sends while held reaches the session only on Release, in
// order and through the loss function; then sends go straight again.
func TestHoldRelease(t *testing.T) {
	b, p := New(DefaultAddrs)
	defer b.Close()
	p.SetLoss(func(toEdge bool, d Datagram) bool { return string(d.B) == "lose" })
	p.Hold()
	for _, s := range []string{"one", "lose", "two"} {
		if err := p.Send(false, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case d := <-b.l.toBind[0]:
		t.Fatalf("%q reached the session while held", d)
	default:
	}
	p.Release()
	for _, want := range []string{"one", "two"} {
		if d, _, _ := b.Receive(false); string(d) != want {
			t.Fatalf("session got %q, want %q", d, want)
		}
	}
	if err := p.Send(true, []byte("three")); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := b.Receive(true); string(d) != "three" {
		t.Fatalf("after Release the session got %q, want %q", d, "three")
	}
}
