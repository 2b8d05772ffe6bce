package bindtest

import (
	"context"
	"errors"
	"net"
	"os"
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
		d2, natPort, from, err := b.Receive(t.Context(), time.Time{})
		if err != nil || string(d2) != "to branch" || natPort != nat || from != b.RemoteAddr(nat) {
			t.Fatalf("bind got %q on NAT-T port %v from %v, %v; want it on NAT-T port %v", d2, natPort, from, err, nat)
		}
	}
	// Nothing more: Receive waits until its deadline, and until Close
	// without one.
	start := time.Now()
	if _, _, _, err := b.Receive(t.Context(), start.Add(20*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("Receive with nothing sent: %v after %v, want os.ErrDeadlineExceeded after 20ms", err, time.Since(start))
	}
	got := make(chan error, 1)
	go func() {
		_, _, _, err := b.Receive(t.Context(), time.Time{})
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Receive with nothing sent and no deadline returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Close()
	if err := <-got; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
}

// A deadline that has passed, or a ctx that is done, ends Receive before a
// queued datagram is taken, so that the session's timers are never
// starved; the datagram stays for the next Receive.
func TestReceiveEnds(t *testing.T) {
	b, p := New(DefaultAddrs)
	defer b.Close()
	if err := p.Send(false, []byte("queued")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.Receive(t.Context(), time.Now().Add(-time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Receive with a passed deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, _, err := b.Receive(ctx, time.Time{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a cancelled ctx: %v, want context.Canceled", err)
	}
	if d, _, _, err := b.Receive(t.Context(), time.Time{}); err != nil || string(d) != "queued" {
		t.Fatalf("Receive after those: %q, %v; want %q", d, err, "queued")
	}
	// A ctx that ends while Receive waits ends it.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, _, _, err := b.Receive(ctx, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive as its ctx ends: %v, want context.DeadlineExceeded", err)
	}
}

// Close unblocks Receive with net.ErrClosed, and later sends fail; what the session sent before stays
// readable.
func TestClose(t *testing.T) {
	b, p := New(DefaultAddrs)
	if err := b.Send(t.Context(), false, []byte("last words")); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := b.Receive(t.Context(), time.Time{})
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
	if d, _, _, _ := b.Receive(t.Context(), time.Time{}); string(d) != "keep" {
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
