package ike

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// recorder is an xfrm.Memory that also logs every SA added and removed, in
// order, so that a test can check make-before-break.
type recorder struct {
	*xfrm.Memory
	mu     sync.Mutex
	events []saEvent
}

type saEvent struct {
	add bool
	sa  xfrm.SA
}

func newRecorder() *recorder { return &recorder{Memory: xfrm.NewMemory()} }

func (r *recorder) AddSA(ctx context.Context, sa xfrm.SA) error {
	err := r.Memory.AddSA(ctx, sa)
	if err == nil {
		r.mu.Lock()
		sa.Key = bytes.Clone(sa.Key) // what the kernel got, before any wipe
		r.events = append(r.events, saEvent{true, sa})
		r.mu.Unlock()
	}
	return err
}

func (r *recorder) DelSA(ctx context.Context, sa xfrm.SA) error {
	err := r.Memory.DelSA(ctx, sa)
	r.mu.Lock()
	r.events = append(r.events, saEvent{false, sa})
	r.mu.Unlock()
	return err
}

func (r *recorder) log() []saEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// checkGapless walks the install log: once the first pair is in, there is
// an inbound and an outbound SA at every moment, every SA installed carries
// a key never used before, and it returns how many pairs were installed.
func checkGapless(t *testing.T, events []saEvent) int {
	t.Helper()
	in, out := map[uint32]bool{}, map[uint32]bool{}
	var keys [][]byte
	started := false
	for i, e := range events {
		set := out
		if e.sa.Inbound {
			set = in
		}
		if e.add {
			if slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, e.sa.Key) }) {
				t.Fatalf("event %d: SA %08x reuses an earlier key", i, e.sa.SPI)
			}
			keys = append(keys, e.sa.Key)
			set[e.sa.SPI] = true
			started = started || (len(in) > 0 && len(out) > 0)
			continue
		}
		if !set[e.sa.SPI] {
			t.Fatalf("event %d: SA %08x removed but not installed", i, e.sa.SPI)
		}
		delete(set, e.sa.SPI)
		if started && (len(in) == 0 || len(out) == 0) {
			t.Fatalf("event %d: removing SA %08x (inbound %v) left no SA in that direction: a gap in the tunnel", i, e.sa.SPI, e.sa.Inbound)
		}
	}
	return len(keys) / 2
}

// keysAgree reports whether the initiator has exactly want SAs and the
// responder has the same keys for them.
func keysAgree(mem *recorder, r *ikeresp.Responder, want int) bool {
	sas := mem.SAs()
	if len(sas) != want {
		return false
	}
	theirs := r.Stats().ChildKeys
	for _, sa := range sas {
		if k, ok := theirs[sa.SPI]; !ok || !bytes.Equal(k, sa.Key) {
			return false
		}
	}
	return true
}

// runSession runs s.Run until the test ends and checks it returned cleanly.
func runSession(t *testing.T, s *Session) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return")
		}
	})
}

// TestPeerRekeys: the edge (here the in-process responder) rekeys the Child
// SA and the IKE SA itself, each with X25519 + ML-KEM-768 + ML-KEM-1024
// (CREATE_CHILD_SA + two IKE_FOLLOWUP_KE, fragmented both ways). We answer
// as the responder of those exchanges, install the new Child SA before the
// edge deletes the old one, and keep working on the IKE SA the edge created.
func TestPeerRekeys(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768, message.KE_MLKEM1024}, FragmentSize: 700})
	cfg := tunnelConfig(r)
	cfg.AddKE = []string{"mlkem768", "mlkem1024"}
	cfg.FragmentSize = 700
	cfg.DPDInterval = "100ms"
	opt, _ := testOptions(t, r)
	rec := newRecorder()
	opt.Installer = rec
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	waitFor(t, "tunnel", func() bool { return s.Status().State == "established" && keysAgree(rec, r, 2) })
	first, dropped := s.Status().Children[0], s.Status().Dropped
	fragsIn := r.Stats().FragmentsIn

	if err := r.RekeyChild(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge's child rekey", func() bool { return r.Stats().OwnChildRekeys == 1 && keysAgree(rec, r, 2) })
	rs := r.Stats()
	if rs.FollowupKEsSent != 2 || rs.RekeysRefused != 0 || rs.RekeysFailed != 0 || rs.FragmentsIn <= fragsIn {
		t.Fatalf("responder stats after its child rekey: %+v", rs)
	}
	st := s.Status()
	if st.ChildRekeys != 1 || len(st.Children) != 1 || st.Children[0].SPIIn == first.SPIIn || st.Children[0].SPIOut == first.SPIOut {
		t.Fatalf("status after the edge's child rekey: %+v (first child %+v)", st, first)
	}
	if n := checkGapless(t, rec.log()); n != 2 {
		t.Fatalf("%d SA pairs installed, want 2", n)
	}

	spiI := st.SPIi
	if err := r.RekeyIKE(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge's IKE rekey", func() bool {
		rs := r.Stats()
		return rs.OwnIKERekeys == 1 && rs.ActiveIKE == 1 && s.Status().IKERekeys == 1
	})
	st = s.Status()
	if st.SPIi == spiI || !slices.Equal(st.AddKE, []string{"mlkem768", "mlkem1024"}) {
		t.Fatalf("status after the edge's IKE rekey: %+v", st)
	}
	// Both directions work on the IKE SA the edge created: our DPD
	// requests (without the I flag) are answered, and the edge rekeys the
	// Child SA on it.
	infos := r.Stats().Informationals
	waitFor(t, "DPD on the new IKE SA", func() bool { return r.Stats().Informationals >= infos+2 })
	if err := r.RekeyChild(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge's child rekey on the new IKE SA", func() bool { return r.Stats().OwnChildRekeys == 2 && keysAgree(rec, r, 2) })
	if rs := r.Stats(); rs.FollowupKEsSent != 6 || rs.RekeysRefused != 0 || rs.RekeysFailed != 0 {
		t.Fatalf("responder stats: %+v", rs)
	}
	if n := checkGapless(t, rec.log()); n != 3 {
		t.Fatalf("%d SA pairs installed, want 3", n)
	}
	if st := s.Status(); st.ChildRekeys != 2 || st.IKERekeys != 1 || st.State != "established" || st.Dropped != dropped {
		t.Fatalf("status: %+v", st)
	}
}

// TestPeerRekeyCollision: the edge starts a rekey of the Child SA while
// ours of the same SA is in flight. Both are answered as usual (RFC 7296
// 2.25.1), and once both are done the exchange holding the lowest of the
// four nonces loses (2.8.1): its initiator deletes the SA it created, the
// other deletes the replaced one. Both ends agree on one surviving SA,
// whoever lost, without anyone's grace-period fallback.
func TestPeerRekeyCollision(t *testing.T) {
	for _, tc := range []struct {
		low          ikeresp.LowNonce
		oursSurvives bool
	}{
		{ikeresp.LowNonceOwn, true},     // the edge's Ni is lowest: its exchange loses
		{ikeresp.LowNonceAnswer, false}, // the edge's Nr in answer to ours is lowest: ours loses
	} {
		t.Run("low="+tc.low.String(), func(t *testing.T) {
			r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, LowNonce: tc.low})
			cfg := tunnelConfig(r)
			cfg.AddKE = []string{"mlkem768"}
			opt, mem := testOptions(t, r)
			opt.DeleteGrace = time.Hour // only the ends' own Deletes may settle it
			s := newSession(t, cfg, opt)
			ctx := context.Background()
			if err := s.Establish(ctx); err != nil {
				t.Fatal(err)
			}
			first := s.children[0]
			// The edge's request is queued before ours goes out, so we see
			// it while waiting for the answer to ours.
			if err := r.RekeyChild(); err != nil {
				t.Fatal(err)
			}
			if err := s.rekeyChild(ctx, first); err != nil {
				t.Fatal(err)
			}
			mctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- s.maintain(mctx) }()
			waitFor(t, "one Child SA at both ends", func() bool {
				return keysAgree(&recorder{Memory: mem}, r, 2) && len(r.Stats().ChildKeys) == 2
			})
			cancel()
			if err := <-done; err != context.Canceled {
				t.Fatalf("maintain: %v", err)
			}
			rs := r.Stats()
			if rs.RekeysRefused != 0 || rs.RekeysFailed != 0 || rs.ChildRekeys != 1 || rs.OwnChildRekeys != 1 || rs.Collisions != 1 {
				t.Fatalf("responder stats: %+v", rs)
			}
			if rs.CollisionsWon == 1 == tc.oursSurvives {
				t.Fatalf("the edge thinks it won (%d) but we should survive: %v", rs.CollisionsWon, tc.oursSurvives)
			}
			if len(s.children) != 1 || s.children[0] == first || s.children[0].ours != tc.oursSurvives || s.children[0].replaced {
				t.Fatalf("children after the collision: %d, survivor ours=%v, want ours=%v", len(s.children), s.children[0].ours, tc.oursSurvives)
			}
			// The survivor is an ordinary Child SA again: the next rekey works.
			if err := s.rekeyChild(ctx, s.children[0]); err != nil {
				t.Fatal(err)
			}
			checkKeysAgree(t, mem, r, 2)
		})
	}
}

// TestReplacedChildrenPruned (defect 7): an authenticated edge rekeys the
// Child SA again and again without ever deleting the SAs it replaced. We
// delete each one ourselves after the grace period, so the SAs do not grow.
func TestReplacedChildrenPruned(t *testing.T) {
	r := startResponder(t, ikeresp.Config{Hostile: ikeresp.Hostile{KeepReplaced: true}})
	cfg := tunnelConfig(r)
	cfg.AddKE = []string{}
	cfg.AllowClassical = true
	opt, mem := testOptions(t, r)
	opt.DeleteGrace = 50 * time.Millisecond
	s := newSession(t, cfg, opt)
	runSession(t, s)
	waitFor(t, "tunnel", func() bool { return s.Status().State == "established" })
	for i := 1; i <= 5; i++ {
		if err := r.RekeyChild(); err != nil {
			t.Fatal(err)
		}
		// Status too: it is refreshed once the prune is done, just
		// after the kernel's SAs go.
		waitFor(t, fmt.Sprintf("edge's rekey %d and our prune", i), func() bool {
			return r.Stats().OwnChildRekeys == i && len(r.Stats().ChildKeys) == 2 && len(mem.SAs()) == 2 && len(s.Status().Children) == 1
		})
	}
	if rs := r.Stats(); rs.DeletesESP != 5 || rs.RekeysRefused != 0 {
		t.Fatalf("responder stats: %+v", rs)
	}
	if st := s.Status(); st.State != "established" || len(st.Children) != 1 || st.ChildRekeys != 5 {
		t.Fatalf("status: %+v", st)
	}
}

// TestEdgeRekeyFlood (defect 7): rekeys faster than any grace period ends
// are refused once maxChildSAs exist; the tunnel stays up.
func TestEdgeRekeyFlood(t *testing.T) {
	r := startResponder(t, ikeresp.Config{Hostile: ikeresp.Hostile{KeepReplaced: true}})
	cfg := tunnelConfig(r)
	cfg.AddKE = []string{}
	cfg.AllowClassical = true
	opt, mem := testOptions(t, r)
	opt.DeleteGrace = time.Hour
	s := newSession(t, cfg, opt)
	runSession(t, s)
	waitFor(t, "tunnel", func() bool { return s.Status().State == "established" })
	const flood = 3 * maxChildSAs
	for i := 1; i <= flood; i++ {
		if err := r.RekeyChild(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the edge's rekey to end", func() bool {
			rs := r.Stats()
			return rs.OwnChildRekeys+rs.RekeysRefused == i
		})
	}
	rs := r.Stats()
	if rs.OwnChildRekeys != maxChildSAs-1 || rs.RekeysRefused != flood-(maxChildSAs-1) || rs.LastRefusal != message.TEMPORARY_FAILURE {
		t.Fatalf("responder stats: %+v", rs)
	}
	if n := len(mem.SAs()); n != 2*maxChildSAs {
		t.Fatalf("%d kernel SAs, want %d", n, 2*maxChildSAs)
	}
	if st := s.Status(); st.State != "established" {
		t.Fatalf("status: %+v", st)
	}
}

// TestEdgeRestartMidRekey (defect 6): the edge starts a rekey, gets our
// answer and restarts before its IKE_FOLLOWUP_KE. The half-done exchange
// prompts a liveness check at once; the tunnel is re-established long
// before the next DPD interval (here one minute) would have noticed.
func TestEdgeRestartMidRekey(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Hostile: ikeresp.Hostile{CrashMidRekey: true}})
	cfg := tunnelConfig(r)
	cfg.AddKE = []string{"mlkem768"}
	cfg.DPDInterval = "1m"
	opt, _ := testOptions(t, r)
	s := newSession(t, cfg, opt)
	runSession(t, s)
	waitFor(t, "tunnel", func() bool { return s.Status().State == "established" })
	start := time.Now()
	if err := r.RekeyChild(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-established after the edge's restart", func() bool {
		return r.Stats().Crashed == 1 && r.Stats().Auths == 2 && s.Status().State == "established"
	})
	// A liveness check (4 tries: 600ms) after the stall (80ms), one
	// reconnect backoff: well under the 30s the half-done rekey was kept.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("recovery took %v", d)
	}
}

// TestRunRekeysOnTimer: with short lifetimes Run rekeys the Child SA and
// the IKE SA on its own at ~90% of them, with ML-KEM every time, and the
// traffic keys change without a gap: each old SA goes only after its
// successor is installed.
func TestRunRekeysOnTimer(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	cfg := tunnelConfig(r)
	cfg.AddKE = []string{"mlkem768"}
	opt, _ := testOptions(t, r)
	rec := newRecorder()
	opt.Installer = rec
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	// Below what Validate allows a configuration, to keep the test short.
	s.ikeLife, s.childLife = 1500*time.Millisecond, 600*time.Millisecond
	start := time.Now()
	runSession(t, s)
	waitFor(t, "timer rekeys", func() bool {
		st := s.Status()
		return st.ChildRekeys >= 3 && st.IKERekeys >= 2 && keysAgree(rec, r, 2)
	})
	elapsed := time.Since(start)
	st, rs := s.Status(), r.Stats()
	if rs.Auths != 1 || st.State != "established" || st.LastError != "" {
		t.Fatalf("tunnel was re-established or failed instead of rekeyed: status %+v, responder %+v", st, rs)
	}
	if !slices.Equal(st.AddKE, []string{"mlkem768"}) || rs.FollowupKEs < st.ChildRekeys+st.IKERekeys {
		t.Fatalf("rekeys without ML-KEM: status %+v, responder %+v", st, rs)
	}
	// Not earlier than the timers allow: the third child rekey is due no
	// sooner than 3 x 81% of the lifetime.
	if min := 3 * s.childLife * 81 / 100; elapsed < min {
		t.Fatalf("%d child rekeys after %v, before the timers allow (%v)", st.ChildRekeys, elapsed, min)
	}
	if n := checkGapless(t, rec.log()); n < 4 {
		t.Fatalf("%d SA pairs installed, want at least 4", n)
	}
	fmt.Fprintf(t.Output(), "after %v: %d child and %d IKE rekeys\n", elapsed.Round(time.Millisecond), st.ChildRekeys, st.IKERekeys)
}
