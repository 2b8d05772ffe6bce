package ike

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// Each hostile responder must make Establish fail with a clear error, with
// nothing installed and no classical-only SA.
func TestHostileResponderFails(t *testing.T) {
	mlkem := []uint16{message.KE_MLKEM768}
	tests := []struct {
		name  string
		rc    ikeresp.Config
		check func(error) bool
	}{
		{"short ML-KEM ciphertext", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{ShortCiphertext: true}},
			func(err error) bool { return errors.Is(err, kex.ErrPeerData) }},
		// Implicit rejection: keys diverge, so the responder cannot read our
		// IKE_AUTH and its answers never authenticate.
		{"invalid ML-KEM ciphertext", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{BadCiphertext: true}},
			func(err error) bool { return errors.Is(err, ErrPeerLost) }},
		{"wrong KE group", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{WrongKEGroup: true}},
			func(err error) bool { return err != nil }},
		{"no INTERMEDIATE support", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{NoIntermediate: true}},
			func(err error) bool { return errors.Is(err, ErrDowngrade) }},
		{"classical-only responder", ikeresp.Config{},
			func(err error) bool { return errors.Is(err, ErrDowngrade) }},
		{"ML-KEM-512 only responder", ikeresp.Config{AddKE: []uint16{message.KE_MLKEM512}},
			func(err error) bool {
				var r *ErrRefused
				return errors.As(err, &r) && r.Notify == message.NO_PROPOSAL_CHOSEN
			}},
		{"wrong PSK", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{WrongPSK: []byte("another-psk-0123456")}},
			func(err error) bool { return errors.Is(err, ErrAuthFailed) }},
		{"INVALID_KE for a group we never offered", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{InvalidKE: 14}},
			func(err error) bool { return errors.Is(err, ErrPeerLost) }},
		// The answer must carry only transforms we offered, one per type:
		// ADDKE1 NONE (never offered without allow_classical) would be a
		// classical-only SA, a duplicate an ambiguous one.
		{"ADDKE1 NONE chosen", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{AddKENone: true}},
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "did not offer") }},
		{"ADDKE1 chosen twice", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{DuplicateAddKE: true}},
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "two transforms") }},
		{"silent after IKE_SA_INIT", ikeresp.Config{AddKE: mlkem, Hostile: ikeresp.Hostile{Silent: true}},
			func(err error) bool { return errors.Is(err, ErrPeerLost) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, tt.rc)
			opt, mem := testOptions(t, r)
			s := newSession(t, tunnelConfig(r), opt)
			err := s.Establish(context.Background())
			if err == nil || !tt.check(err) {
				t.Fatalf("Establish() = %v", err)
			}
			st := s.Status()
			if st.State == "established" || st.LastError == "" {
				t.Fatalf("status after failure: %+v", st)
			}
			if len(mem.SAs()) != 0 {
				t.Fatalf("SAs installed after failure: %v", mem.SAs())
			}
		})
	}
}

// Noise around the real responses must be ignored, not fatal.
func TestHostileNoiseIgnored(t *testing.T) {
	mlkem := []uint16{message.KE_MLKEM768}
	tests := []struct {
		name string
		h    ikeresp.Hostile
	}{
		{"unauthenticated AUTHENTICATION_FAILED", ikeresp.Hostile{UnauthNotify: true}},
		{"garbage datagrams", ikeresp.Hostile{Garbage: true}},
		{"flood of retransmitted responses", ikeresp.Hostile{Flood: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, ikeresp.Config{AddKE: mlkem, FragmentSize: 500, Hostile: tt.h})
			opt, mem := testOptions(t, r)
			s := newSession(t, tunnelConfig(r), opt)
			if err := s.Establish(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s.Status().Dropped == 0 {
				t.Fatal("no packet was counted as dropped")
			}
			checkKeysAgree(t, mem, r, 2)
			// The SA still works after the noise: a liveness check succeeds.
			if err := s.checkLiveness(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Truncated and padded copies of a valid header, and header-only packets,
// sent from the edge's own address and port (so the connected socket lets
// them through) while established: each is dropped, none is fatal.
func TestGarbageToInitiator(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	if err := s.Establish(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := r.Current()
	if err != nil {
		t.Fatal(err)
	}
	var dgs [][]byte
	for _, mid := range []uint32{0, 1, 7, 1 << 31} {
		hdr := message.Header{SPIi: info.SPIi, SPIr: info.SPIr, Exchange: message.INFORMATIONAL, MessageID: mid,
			Version: message.Version, Length: message.HeaderLen}
		dgs = append(dgs, hdr.Marshal(nil)) // header only: no payloads at all
		valid := hdr.Marshal(nil)
		valid[16] = byte(message.PayloadSK)
		for i := 0; i < 50; i++ {
			b := append(append([]byte(nil), valid...), make([]byte, i)...)
			if i%3 == 0 {
				b = b[:len(b)-1-i%len(b)]
			}
			dgs = append(dgs, b)
		}
	}
	if err := r.Inject(dgs...); err != nil {
		t.Fatal(err)
	}
	// The liveness check dispatches whatever arrived meanwhile.
	if err := s.checkLiveness(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.State != "established" || st.Dropped == 0 {
		t.Fatalf("after garbage from the edge's address: state %s, %d dropped", st.State, st.Dropped)
	}
}
