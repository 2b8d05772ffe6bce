package ike

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

func TestRekeys(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768, message.KE_MLKEM1024}, FragmentSize: 700})
	cfg := tunnelConfig(r)
	cfg.AddKE = []string{"mlkem768", "mlkem1024"}
	opt, mem := testOptions(t, r)
	s := newSession(t, cfg, opt)
	ctx := context.Background()
	if err := s.Establish(ctx); err != nil {
		t.Fatal(err)
	}
	oldSPIs := []uint32{s.children[0].spiIn, s.children[0].spiOut}

	if err := s.rekeyChild(ctx, s.children[0]); err != nil {
		t.Fatal(err)
	}
	rs := r.Stats()
	if rs.ChildRekeys != 1 || rs.FollowupKEs != 2 || rs.DeletesESP != 1 {
		t.Fatalf("responder stats after child rekey: %+v", rs)
	}
	checkKeysAgree(t, mem, r, 2)
	for _, sa := range mem.SAs() {
		if slices.Contains(oldSPIs, sa.SPI) {
			t.Fatalf("old SA %08x still installed", sa.SPI)
		}
	}

	oldIKE := s.ike.spii
	if err := s.rekeyIKE(ctx); err != nil {
		t.Fatal(err)
	}
	rs = r.Stats()
	if rs.IKERekeys != 1 || rs.FollowupKEs != 4 || rs.DeletesIKE != 1 || rs.ActiveIKE != 1 {
		t.Fatalf("responder stats after IKE rekey: %+v", rs)
	}
	if s.ike.spii == oldIKE || s.ike.nextMID != 0 {
		t.Fatalf("new IKE SA not in use: spi %x mid %d", s.ike.spii, s.ike.nextMID)
	}
	// The new IKE SA carries further exchanges, including another child rekey.
	if err := s.rekeyChild(ctx, s.children[0]); err != nil {
		t.Fatal(err)
	}
	checkKeysAgree(t, mem, r, 2)
	st := s.Status()
	if st.IKERekeys != 1 || st.ChildRekeys != 2 || !slices.Equal(st.AddKE, []string{"mlkem768", "mlkem1024"}) {
		t.Fatalf("status %+v", st)
	}
}

// Run must come back after the edge deletes the SA or restarts, and delete
// and remove everything on shutdown.
func TestRunReconnectsAfterPeerDelete(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	cfg := tunnelConfig(r)
	cfg.DPDInterval = "200ms"
	opt, mem := testOptions(t, r)
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "first SA", func() bool { return r.Stats().Auths == 1 && len(mem.SAs()) == 2 })

	if err := r.DeleteIKE(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-establishment", func() bool { return r.Stats().Auths == 2 && s.Status().State == "established" })

	// A lost peer (silent, then restarted) is detected by DPD and replaced.
	r.Restart()
	waitFor(t, "re-establishment after restart", func() bool { return r.Stats().Auths >= 3 && s.Status().State == "established" })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if len(mem.SAs()) != 0 || len(mem.Policies()) != 0 {
		t.Fatal("kernel state left after shutdown")
	}
	if r.Stats().DeletesIKE == 0 {
		t.Fatal("no IKE delete at shutdown")
	}
}
