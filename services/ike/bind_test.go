package ike

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/bindtest"
	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
	"golang.org/x/sys/unix"
)

// TestLostPeerOverMemoryBind runs IKE_SA_INIT over the in-memory Bind
// against an edge that never answers properly: the session gets its ports
// from Options.NewBind with the configured addresses, sends the same
// request RetransmitTries times on the IKE port, drops the edge's junk,
// gives up with ErrPeerLost, and Close releases the Bind.
func TestLostPeerOverMemoryBind(t *testing.T) {
	b, peer := bindtest.New(bindtest.DefaultAddrs)
	cfg := tunnelConfigTo(bindtest.DefaultAddrs.Remote)
	var asked []BindConfig
	const tries = 4
	s, err := New(cfg, Options{
		NewBind:        func(_ context.Context, c BindConfig) (Bind, error) { asked = append(asked, c); return b, nil },
		Logger:         slog.New(slog.DiscardHandler),
		RetransmitBase: 5 * time.Millisecond, RetransmitMax: 10 * time.Millisecond, RetransmitTries: tries,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Junk from the edge's address before any answer: not IKE, dropped.
	if err := peer.Send(false, []byte("not IKE")); err != nil {
		t.Fatal(err)
	}
	err = s.Establish(t.Context())
	if !errors.Is(err, ErrPeerLost) {
		t.Fatalf("Establish against a silent edge = %v, want ErrPeerLost", err)
	}
	want := BindConfig{Remote: bindtest.DefaultAddrs.Remote, RemoteNATPort: 4500}
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("NewBind called with %+v, want once with %+v", asked, want)
	}
	var first []byte
	for i := range tries {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		d, err := peer.Recv(ctx)
		cancel()
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i+1, tries, err)
		}
		h, err := message.ParseHeader(d.B)
		if err != nil || d.NATPort || h.Exchange != message.IKE_SA_INIT || h.IsResponse() {
			t.Fatalf("datagram %d: %+v on NAT port %v (%v), want an IKE_SA_INIT request on the IKE port", i+1, h, d.NATPort, err)
		}
		if first == nil {
			first = d.B
		} else if !bytes.Equal(d.B, first) {
			t.Fatalf("retransmission %d differs from the request", i)
		}
	}
	if n := peer.Pending(); n != 0 {
		t.Fatalf("%d datagrams beyond the %d tries", n, tries)
	}
	if st := s.Status(); st.Retransmits != tries-1 || st.Dropped != 1 {
		t.Fatalf("status %+v: want %d retransmits and the junk dropped", st, tries-1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !peer.Closed() {
		t.Fatal("Close left the Bind open")
	}
}

// TestFloodDoesNotStarveRetransmits: junk from the edge's address, on both
// ports as fast as the link takes it, is dropped while the session waits
// for an answer, and its retransmission timer still fires on time: the
// request goes out exactly RetransmitTries times and the session gives up
// with ErrPeerLost, as with a silent edge.
func TestFloodDoesNotStarveRetransmits(t *testing.T) {
	b, peer := bindtest.New(bindtest.DefaultAddrs)
	cfg := tunnelConfigTo(bindtest.DefaultAddrs.Remote)
	const tries = 4
	s := newSession(t, cfg, Options{
		NewBind: func(context.Context, BindConfig) (Bind, error) { return b, nil },
		Logger:  slog.New(slog.DiscardHandler),
		// 20+40+40+40 ms in all.
		RetransmitBase: 20 * time.Millisecond, RetransmitMax: 40 * time.Millisecond, RetransmitTries: tries,
	})
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			peer.Send(n%2 == 0, []byte("not IKE, not ESP"))
			n++
		}
	}()
	// A bound, so that a session the flood kept waiting fails here
	// rather than at go test's timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Establish(ctx)
	took := time.Since(start)
	close(stop)
	n := <-flooded
	if !errors.Is(err, ErrPeerLost) {
		t.Fatalf("Establish under a flood = %v, want ErrPeerLost", err)
	}
	if n < 1000 {
		t.Fatalf("only %d datagrams of flood: too few to test anything", n)
	}
	if took > 2*time.Second {
		t.Fatalf("gave up after %v under a flood, want about 140ms", took)
	}
	sent := 0
	for peer.Pending() > 0 {
		d, err := peer.Recv(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if h, err := message.ParseHeader(d.B); err == nil && h.Exchange == message.IKE_SA_INIT {
			sent++
		}
	}
	if st := s.Status(); sent != tries || st.Retransmits != tries-1 || st.Dropped == 0 {
		t.Fatalf("under a flood of %d datagrams: %d requests sent, status %+v; want %d, %d retransmits and junk dropped", n, sent, st, tries, tries-1)
	}
}

// TestClosedBindEndsTheWait: a Bind closed under a waiting session ends
// the exchange with net.ErrClosed at once, instead of retransmitting into
// a closed Bind until the tries run out.
func TestClosedBindEndsTheWait(t *testing.T) {
	b, _ := bindtest.New(bindtest.DefaultAddrs)
	cfg := tunnelConfigTo(bindtest.DefaultAddrs.Remote)
	s := newSession(t, cfg, Options{
		NewBind: func(context.Context, BindConfig) (Bind, error) { return b, nil },
		Logger:  slog.New(slog.DiscardHandler), RetransmitBase: 2 * time.Second, RetransmitTries: 3,
	})
	time.AfterFunc(50*time.Millisecond, func() { b.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Establish(ctx)
	if !errors.Is(err, net.ErrClosed) || time.Since(start) > time.Second {
		t.Fatalf("Establish with its Bind closed after 50ms = %v after %v, want net.ErrClosed before the first retransmission (2s)", err, time.Since(start))
	}
}

// TestCancelledEstablishSendsNothing: the ctx of Establish reaches the
// Bind, when it is opened and on every send, so a session stopped before
// it started neither dials nor sends.
func TestCancelledEstablishSendsNothing(t *testing.T) {
	b, peer := bindtest.New(bindtest.DefaultAddrs)
	cfg := tunnelConfigTo(bindtest.DefaultAddrs.Remote)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var dialCtxErr error
	s := newSession(t, cfg, Options{
		NewBind: func(ctx context.Context, _ BindConfig) (Bind, error) { dialCtxErr = ctx.Err(); return b, nil },
		Logger:  slog.New(slog.DiscardHandler), RetransmitBase: time.Second,
	})
	if err := s.Establish(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Establish with a cancelled ctx = %v, want context.Canceled", err)
	}
	if !errors.Is(dialCtxErr, context.Canceled) {
		t.Fatalf("NewBind got a ctx with error %v, want Establish's (cancelled)", dialCtxErr)
	}
	if n := peer.Pending(); n != 0 {
		t.Fatalf("%d datagrams sent after the ctx was cancelled", n)
	}
	if _, err := DialUDP(ctx, BindConfig{Remote: bindtest.DefaultAddrs.Remote, RemoteNATPort: 4500}); !errors.Is(err, context.Canceled) {
		t.Fatalf("DialUDP with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// TestLossyPathInMemory is the unit-level twin of TestInteropLossyPath:
// the in-process responder on an in-memory link that loses every third
// datagram in each direction. Establishment, both our rekeys and a
// liveness check get through on retransmissions and the responder's cached
// answers, and both ends agree on every key.
func TestLossyPathInMemory(t *testing.T) {
	b, peer := bindtest.New(bindtest.DefaultAddrs)
	var mu sync.Mutex
	var sent, lost [2]int // by direction: 0 towards the session, 1 towards the edge
	peer.SetLoss(func(toEdge bool, _ bindtest.Datagram) bool {
		mu.Lock()
		defer mu.Unlock()
		i := 0
		if toEdge {
			i = 1
		}
		sent[i]++
		if sent[i]%3 == 1 { // the first, the fourth, ...: IKE_SA_INIT's first try is lost
			lost[i]++
			return true
		}
		return false
	})
	r := ikeresp.NewMemory(ikeresp.Config{ID: "edge.example", PSK: []byte(testPSK), AddKE: []uint16{message.KE_MLKEM768}}, peer)
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan struct{})
	go func() { r.Serve(ctx); close(served) }()
	// Registered before the session's Close, so it runs after it: the
	// session's Delete is answered.
	t.Cleanup(func() { cancel(); <-served })

	cfg := tunnelConfig(r)
	mem := xfrm.NewMemory()
	s := newSession(t, cfg, Options{
		NewBind:   func(context.Context, BindConfig) (Bind, error) { return b, nil },
		Installer: mem, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		RetransmitBase: 20 * time.Millisecond, RetransmitMax: 80 * time.Millisecond, RetransmitTries: 8,
	})
	if err := s.Establish(t.Context()); err != nil {
		t.Fatalf("Establish over a lossy link: %v", err)
	}
	checkKeysAgree(t, mem, r, 2)
	if err := s.rekeyChild(t.Context(), s.children[0]); err != nil {
		t.Fatalf("child rekey over a lossy link: %v", err)
	}
	if err := s.rekeyIKE(t.Context()); err != nil {
		t.Fatalf("IKE rekey over a lossy link: %v", err)
	}
	if err := s.checkLiveness(t.Context()); err != nil {
		t.Fatalf("liveness over a lossy link: %v", err)
	}
	checkKeysAgree(t, mem, r, 2)
	st, rs := s.Status(), r.Stats()
	if !hybridEstablished(st) || st.ChildRekeys != 1 || st.IKERekeys != 1 || st.Retransmits == 0 {
		t.Fatalf("status %+v", st)
	}
	if rs.ActiveIKE != 1 || rs.ChildRekeys != 1 || rs.IKERekeys != 1 {
		t.Fatalf("responder %+v", rs)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("lost %d datagrams towards the session and %d towards the edge; %d retransmissions", lost[0], lost[1], st.Retransmits)
	if lost[0] == 0 || lost[1] == 0 {
		t.Fatalf("the link lost nothing in one direction (%v)", lost)
	}
}

// TestUDPBindReceive: the appliance's Bind returns each datagram whole in a
// slice of exactly its size, from an empty one to the largest UDP allows,
// with the port it arrived at; an ICMP error is consumed, not returned and
// not left to wake Receive again; the deadline, the ctx and Close each end
// a Receive that waits.
func TestUDPBindReceive(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	edgeIKE, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer edgeIKE.Close()
	edgeNAT, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer edgeNAT.Close()
	remote := edgeIKE.LocalAddr().(*net.UDPAddr).AddrPort()
	b, err := DialUDP(t.Context(), BindConfig{Remote: remote, RemoteNATPort: edgeNAT.LocalAddr().(*net.UDPAddr).AddrPort().Port()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tc := range []struct {
		natPort bool
		size    int
	}{{false, 0}, {false, 1}, {true, 1500}, {false, 65507}, {true, 65507}, {false, 200}} {
		d := make([]byte, tc.size)
		for i := range d {
			d[i] = byte(i*7 + tc.size)
		}
		from := edgeIKE
		if tc.natPort {
			from = edgeNAT
		}
		if _, err := from.WriteToUDPAddrPort(d, b.LocalAddr(tc.natPort)); err != nil {
			t.Fatal(err)
		}
		got, natPort, src, err := b.Receive(t.Context(), time.Now().Add(5*time.Second))
		if err != nil || !bytes.Equal(got, d) || len(got) != cap(got) && tc.size > 0 || natPort != tc.natPort || src != b.RemoteAddr(tc.natPort) {
			t.Fatalf("%d bytes to NAT-T port %v: got %d bytes (cap %d, equal %v) on NAT-T port %v from %v, %v",
				tc.size, tc.natPort, len(got), cap(got), bytes.Equal(got, d), natPort, src, err)
		}
	}

	// Nothing more: the deadline ends the wait, and a passed one returns
	// at once.
	start := time.Now()
	if _, _, _, err := b.Receive(t.Context(), start.Add(30*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("Receive with nothing sent: %v after %v, want os.ErrDeadlineExceeded after 30ms", err, time.Since(start))
	}
	if _, err := edgeIKE.WriteToUDPAddrPort([]byte("queued"), b.LocalAddr(false)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // loopback: the datagram is queued by now
	if _, _, _, err := b.Receive(t.Context(), time.Now().Add(-time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Receive with a passed deadline and a datagram queued: %v, want os.ErrDeadlineExceeded", err)
	}
	if d, _, _, err := b.Receive(t.Context(), time.Now().Add(5*time.Second)); err != nil || string(d) != "queued" {
		t.Fatalf("Receive after the passed deadline: %q, %v; want the queued datagram", d, err)
	}

	// A ctx that ends while Receive waits ends it; one already done ends
	// it at once.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if _, _, _, err := b.Receive(ctx, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive as its ctx ends: %v, want context.DeadlineExceeded", err)
	}
	if _, _, _, err := b.Receive(ctx, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive with a done ctx: %v, want context.DeadlineExceeded", err)
	}

	// A flood on one port does not hold back the other: the port looked
	// at first takes turns, so the NAT-T datagram behind 50 on the IKE
	// port comes within two reads, not after the 50.
	for range 50 {
		if _, err := edgeIKE.WriteToUDPAddrPort([]byte("flood"), b.LocalAddr(false)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := edgeNAT.WriteToUDPAddrPort([]byte("answer"), b.LocalAddr(true)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // loopback: all queued by now
	flood := 50
	for i := 1; ; i++ {
		d, natPort, _, err := b.Receive(t.Context(), time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if natPort {
			if string(d) != "answer" || i > 2 {
				t.Fatalf("NAT-T port's datagram %q came with read %d, want %q within 2 reads", d, i, "answer")
			}
			break
		}
		flood--
	}
	for range flood {
		if _, _, _, err := b.Receive(t.Context(), time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("draining the flood: %v", err)
		}
	}

	// A port nobody listens on answers with ICMP port unreachable, which
	// Receive consumes: the socket holds no pending error afterwards, and
	// Receive waits on until its deadline.
	edgeNAT.Close()
	if err := b.Send(t.Context(), true, []byte("to a closed port")); err != nil {
		t.Fatal(err)
	}
	raw := b.(*udpBind).nat.raw
	// poll reports the pending error without clearing it.
	pollErr := func() (bool, error) {
		var n int
		var perr error
		fds := []unix.PollFd{{Events: unix.POLLIN}}
		err := raw.Control(func(fd uintptr) {
			fds[0].Fd = int32(fd)
			n, perr = unix.Poll(fds, 1000)
		})
		return n == 1 && fds[0].Revents&unix.POLLERR != 0, errors.Join(err, perr)
	}
	if got, err := pollErr(); err != nil || !got {
		t.Fatalf("no ICMP report pending on the NAT-T socket (%v): the case tests nothing", err)
	}
	start = time.Now()
	if _, _, _, err := b.Receive(t.Context(), start.Add(50*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("Receive after ICMP port unreachable: %v after %v, want os.ErrDeadlineExceeded after 50ms", err, time.Since(start))
	}
	var soerr int
	raw.Control(func(fd uintptr) { soerr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) })
	if err != nil || soerr != 0 {
		t.Fatalf("NAT-T socket's pending error after Receive: %d (%v), want the ICMP report consumed", soerr, err)
	}

	// Close ends a Receive that waits.
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := b.Receive(t.Context(), time.Time{})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Receive")
	}
	if _, _, _, err := b.Receive(t.Context(), time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Receive on a closed Bind: %v, want net.ErrClosed", err)
	}
}
