package ike

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

func TestHandshake(t *testing.T) {
	tests := []struct {
		name          string
		addke         []string
		respAddKE     []uint16
		fragmentSize  int // ours
		respFragment  int
		wantFragments bool
	}{
		{"mlkem768 fits 1280 unfragmented", nil, []uint16{message.KE_MLKEM768}, 0, 0, false},
		{"mlkem512", []string{"mlkem512"}, []uint16{message.KE_MLKEM512}, 0, 0, false},
		{"mlkem1024 at 1280", []string{"mlkem1024"}, []uint16{message.KE_MLKEM1024}, 1280, 1252, true},
		{"two additional exchanges", []string{"mlkem768", "mlkem1024"}, []uint16{message.KE_MLKEM768, message.KE_MLKEM1024}, 0, 0, true},
		{"tiny fragments both ways", []string{"mlkem768"}, []uint16{message.KE_MLKEM768}, 600, 400, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, ikeresp.Config{AddKE: tt.respAddKE, FragmentSize: tt.respFragment})
			cfg := tunnelConfig(r)
			cfg.AddKE, cfg.FragmentSize = tt.addke, tt.fragmentSize
			opt, mem := testOptions(t, r)
			s := newSession(t, cfg, opt)
			if err := s.Establish(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := s.Status()
			wantAddKE := tt.addke
			if wantAddKE == nil {
				wantAddKE = []string{"mlkem768"} // the default
			}
			if st.State != "established" || st.KE != "x25519" || !slices.Equal(st.AddKE, wantAddKE) ||
				st.Encr != "aes256gcm16" || st.PRF != "prfsha384" || st.ESP != "aes256gcm16" {
				t.Fatalf("status %+v", st)
			}
			rs := r.Stats()
			if rs.Intermediates != len(wantAddKE) || rs.Auths != 1 {
				t.Fatalf("responder saw %d intermediates, %d auths", rs.Intermediates, rs.Auths)
			}
			if tt.wantFragments && (rs.FragmentsIn == 0) {
				t.Fatalf("no IKE fragments received by the responder: %+v", rs)
			}
			if tt.respFragment > 0 && rs.FragmentsOut == 0 {
				t.Fatalf("responder sent no fragments")
			}
			checkKeysAgree(t, mem, r, 2)
			// 2 local x 2 remote subnets.
			if got := len(mem.Policies()); got != 4 {
				t.Fatalf("%d policies, want 4", got)
			}
			if len(st.Children) != 1 || len(st.Children[0].Local) != 2 || len(st.Children[0].Remote) != 2 {
				t.Fatalf("children %+v", st.Children)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if len(mem.SAs()) != 0 || len(mem.Policies()) != 0 {
				t.Fatal("Close left kernel state behind")
			}
			waitFor(t, "IKE delete at the responder", func() bool { return r.Stats().DeletesIKE == 1 })
		})
	}
}

func TestInvalidKEPayloadRetry(t *testing.T) {
	for _, group := range []uint16{message.KE_ECP256, message.KE_ECP384} {
		r := startResponder(t, ikeresp.Config{KE: []uint16{group}, AddKE: []uint16{message.KE_MLKEM768}})
		opt, _ := testOptions(t, r)
		s := newSession(t, tunnelConfig(r), opt)
		if err := s.Establish(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := s.Status(); st.KE == "x25519" || !slices.Equal(st.AddKE, []string{"mlkem768"}) {
			t.Fatalf("status %+v", st)
		}
		if r.Stats().InvalidKESent != 1 {
			t.Fatalf("responder sent %d INVALID_KE_PAYLOAD", r.Stats().InvalidKESent)
		}
	}
}

// tunnel.ke is offered exactly, in its order: no group the operator left
// out, however common.
func TestKEOfferedExactly(t *testing.T) {
	groups := func(p message.Proposal) (ids []uint16) {
		for _, tr := range p.Transforms {
			if tr.Type == message.TransformKE {
				ids = append(ids, tr.ID)
			}
		}
		return ids
	}
	for _, tc := range []struct {
		ke   KEList
		want []uint16
	}{
		{nil, []uint16{message.KE_X25519, message.KE_ECP256, message.KE_ECP384}},
		{KEList{"ecp384"}, []uint16{message.KE_ECP384}},
		{KEList{"ecp384", "x25519"}, []uint16{message.KE_ECP384, message.KE_X25519}},
	} {
		cfg := &Config{KE: tc.ke}
		pol, err := newPolicy(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := groups(pol.ikeProposals()[0]); !slices.Equal(got, tc.want) {
			t.Errorf("ke %v: offered %v, want %v", tc.ke, got, tc.want)
		}
	}
}

// An ADDKE slot with alternatives ("mlkem768|mlkem1024") works with an edge
// that has only the second, and with one that has both (the first wins).
func TestAddKEAlternatives(t *testing.T) {
	for _, tc := range []struct {
		edge []uint16
		want string
	}{
		{[]uint16{message.KE_MLKEM1024}, "mlkem1024"},
		{[]uint16{message.KE_MLKEM768, message.KE_MLKEM1024}, "mlkem768"},
	} {
		r := startResponder(t, ikeresp.Config{AddKE: tc.edge})
		cfg := tunnelConfig(r)
		cfg.AddKE = []string{"mlkem768|mlkem1024"}
		opt, mem := testOptions(t, r)
		s := newSession(t, cfg, opt)
		if err := s.Establish(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := s.Status(); !slices.Equal(st.AddKE, []string{tc.want}) {
			t.Fatalf("edge with %v: status %+v", tc.edge, st)
		}
		checkKeysAgree(t, mem, r, 2)
		// A rekey offers exactly the negotiated method.
		if err := s.rekeyChild(context.Background(), s.children[0]); err != nil {
			t.Fatal(err)
		}
		if rs := r.Stats(); rs.ChildRekeys != 1 || rs.FollowupKEs != 1 {
			t.Fatalf("responder stats after rekey: %+v", rs)
		}
	}
}

// The group the edge asked for with INVALID_KE_PAYLOAD is where the next
// attempt starts: a reconnect does not pay the extra round trip again.
func TestInvalidKERemembered(t *testing.T) {
	r := startResponder(t, ikeresp.Config{KE: []uint16{message.KE_ECP384}, AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	ctx := context.Background()
	for attempt := range 2 {
		if err := s.Establish(ctx); err != nil {
			t.Fatal(err)
		}
		if st := s.Status(); st.KE != "ecp384" {
			t.Fatalf("attempt %d: status %+v", attempt, st)
		}
		if err := s.teardown(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats().InvalidKESent; n != 1 {
		t.Fatalf("responder sent %d INVALID_KE_PAYLOAD over two attempts, want 1", n)
	}
}

func TestCookie(t *testing.T) {
	r := startResponder(t, ikeresp.Config{Cookie: true, AddKE: []uint16{message.KE_MLKEM768}})
	opt, mem := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	if err := s.Establish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Stats().CookiesSent != 1 {
		t.Fatalf("cookies sent %d", r.Stats().CookiesSent)
	}
	checkKeysAgree(t, mem, r, 2)
}

func TestNATTraversal(t *testing.T) {
	r := startResponder(t, ikeresp.Config{FakeNAT: true, AddKE: []uint16{message.KE_MLKEM768}})
	opt, mem := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	if err := s.Establish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.Status().NATT || !r.Stats().NATPortUsed {
		t.Fatalf("did not float to the NAT-T port: %+v", s.Status())
	}
	for _, sa := range mem.SAs() {
		if sa.Encap == nil || (sa.Inbound && sa.Encap.SrcPort != r.NATPort()) || (!sa.Inbound && sa.Encap.DstPort != r.NATPort()) {
			t.Fatalf("SA %v lacks ESP-in-UDP encapsulation towards %d: %+v", sa, r.NATPort(), sa.Encap)
		}
	}
	checkKeysAgree(t, mem, r, 2)
}

// TestAllowClassical covers responders without RFC 9370: one that ignores
// the ADDKE transform types, and one that refuses any proposal carrying
// them (RFC 7296 3.3.6; strongSwan 5.9). allow_classical must reach both,
// rekeys included, and a required ML-KEM must fail clearly against both.
func TestAllowClassical(t *testing.T) {
	for _, tt := range []struct {
		name           string
		strict         bool
		allowClassical bool
		wantErr        string // empty: a classical tunnel
	}{
		{"ignoring responder", false, true, ""},
		{"refusing responder", true, true, ""},
		{"ignoring responder, ML-KEM required", false, false, ErrDowngrade.Error()},
		{"refusing responder, ML-KEM required", true, false, "NO_PROPOSAL_CHOSEN: we offered ENCR aes256gcm16|aes128gcm16, PRF prfsha384|prfsha256|prfsha512, KE x25519|ecp256|ecp384, ADDKE1 mlkem768; it answered [ N(NO_PROPOSAL_CHOSEN) ]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, ikeresp.Config{RejectUnknownTypes: tt.strict})
			cfg := tunnelConfig(r)
			cfg.AllowClassical = tt.allowClassical
			opt, mem := testOptions(t, r)
			s := newSession(t, cfg, opt)
			ctx := context.Background()
			err := s.Establish(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Establish = %v, want an error containing %q", err, tt.wantErr)
				}
				if st := s.Status(); st.State != "down" || len(mem.SAs()) != 0 {
					t.Fatalf("after refusal: status %+v, %d SAs installed", st, len(mem.SAs()))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st := s.Status(); len(st.AddKE) != 0 || st.KE != "x25519" {
				t.Fatalf("status %+v", st)
			}
			// Rekeys offer what the SA uses: no ADDKE, which this
			// responder would refuse.
			if err := s.rekeyChild(ctx, s.children[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.rekeyIKE(ctx); err != nil {
				t.Fatal(err)
			}
			if rs := r.Stats(); rs.ChildRekeys != 1 || rs.IKERekeys != 1 || rs.FollowupKEs != 0 {
				t.Fatalf("responder stats after rekeys: %+v", rs)
			}
			checkKeysAgree(t, mem, r, 2)
		})
	}
}

func TestIKEProposals(t *testing.T) {
	addke := func(p message.Proposal) (ids []uint16) {
		for _, tr := range p.Transforms {
			if tr.Type >= message.TransformADDKE1 && tr.Type <= message.TransformADDKE7 {
				ids = append(ids, tr.ID)
			}
		}
		return ids
	}
	for _, tt := range []struct {
		name string
		pol  policy
		want [][]uint16 // ADDKE transform IDs per proposal
	}{
		{"ML-KEM required: one proposal, no NONE", policy{ke: []uint16{message.KE_X25519}, addke: [][]uint16{{message.KE_MLKEM768}}},
			[][]uint16{{message.KE_MLKEM768}}},
		{"alternatives in one slot, in order", policy{ke: []uint16{message.KE_X25519}, addke: [][]uint16{{message.KE_MLKEM768, message.KE_MLKEM1024}}},
			[][]uint16{{message.KE_MLKEM768, message.KE_MLKEM1024}}},
		{"allow classical: NONE, then a proposal without ADDKE", policy{ke: []uint16{message.KE_X25519}, addke: [][]uint16{{message.KE_MLKEM768}}, allowClassical: true},
			[][]uint16{{message.KE_MLKEM768, message.KE_NONE}, nil}},
		{"classical only", policy{ke: []uint16{message.KE_X25519}, allowClassical: true}, [][]uint16{nil}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			props := tt.pol.ikeProposals()
			if len(props) != len(tt.want) {
				t.Fatalf("%d proposals, want %d", len(props), len(tt.want))
			}
			for i, p := range props {
				if int(p.Num) != i+1 || !slices.Equal(addke(p), tt.want[i]) {
					t.Errorf("proposal %d: num %d ADDKE %v, want %v", i+1, p.Num, addke(p), tt.want[i])
				}
			}
			// A responder may only answer a proposal we made.
			forged := &message.SA{Proposals: []message.Proposal{props[0]}}
			forged.Proposals[0].Num = uint8(len(props) + 1)
			if _, _, err := tt.pol.selectProposal(forged, props); err == nil {
				t.Errorf("accepted an answer to proposal %d, which we never made", len(props)+1)
			}
		})
	}
}
