package ike

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/bindtest"
	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// TestLostPeerOverMemoryBind runs IKE_SA_INIT over the in-memory Bind
// against an edge that never answers properly: the session gets its ports
// from Options.NewBind with the configured addresses, sends the same
// request RetransmitTries times on the IKE port, drops the edge's junk,
// gives up with ErrPeerLost, and Close releases the Bind.
func TestLostPeerOverMemoryBind(t *testing.T) {
	b, peer := bindtest.New(bindtest.DefaultAddrs)
	cfg := &Config{LocalID: "branch1.example", RemoteID: "edge.example", Remote: bindtest.DefaultAddrs.Remote.String(),
		Auth: "psk", PSK: NewSecret(testPSK), LocalSubnets: mustPrefixes("198.18.1.0/24"), RemoteSubnets: mustPrefixes("198.19.0.0/16")}
	var asked []BindConfig
	const tries = 4
	s, err := New(cfg, Options{
		NewBind:        func(c BindConfig) (Bind, error) { asked = append(asked, c); return b, nil },
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
		NewBind:   func(BindConfig) (Bind, error) { return b, nil },
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
