package ike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/bindtest"
	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// The hostile-peer suite: packets that come from the edge's own address and
// port, so they pass the connected sockets and reach the session's parsing.

// runResult is a Run in the background: Done is closed when it returned,
// with its error in Err.
type runResult struct {
	Done chan struct{}
	Err  error
}

// startRun runs s until the test ends; unlike runSession it lets the test
// look at how Run ended.
func startRun(t *testing.T, s *Session) *runResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runResult{Done: make(chan struct{})}
	go func() { rr.Err = s.Run(ctx); close(rr.Done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rr.Done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return rr
}

// pinged makes the edge send one request the session answers, so it has a
// cached response, and returns the live SA as the edge sees it.
func pinged(t *testing.T, r *ikeresp.Responder) ikeresp.SAInfo {
	t.Helper()
	before := r.Stats().ResponsesIn
	if err := r.Ping(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "answer to the edge's ping", func() bool { return r.Stats().ResponsesIn > before })
	info, err := r.Current()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Defect 1: a header-only packet with the current SPIs and the previous
// Message ID must neither panic the session nor earn a resend of the
// cached response; a byte-exact repeat of the request must.
func TestHeaderOnlyRepeat(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	run := startRun(t, s)
	waitFor(t, "tunnel up", func() bool { return s.Status().State == "established" })
	info := pinged(t, r)
	if info.PeerMID == 0 || len(info.LastRequest) != 1 {
		t.Fatalf("edge state after ping: %+v", info)
	}
	forged := message.Header{SPIi: info.SPIi, SPIr: info.SPIr, Exchange: message.INFORMATIONAL,
		MessageID: info.NextMID - 1, Version: message.Version, Length: message.HeaderLen}
	if info.Initiator {
		forged.Flags = message.FlagInitiator
	}
	headerOnly := forged.Marshal(nil)

	dropped := s.Status().Dropped
	answered := r.Stats().ResponsesIn
	for range 3 {
		if err := r.Inject(headerOnly); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "forged repeats dropped", func() bool { return s.Status().Dropped >= dropped+3 })
	select {
	case <-run.Done:
		t.Fatalf("Run returned after header-only packets: %v", run.Err)
	default:
	}
	if got := r.Stats().ResponsesIn; got != answered {
		t.Fatalf("a forged repeat earned %d resends of the cached response", got-answered)
	}

	// The real repeat is answered again, once per repeat.
	if err := r.Inject(info.LastRequest...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resend for a true repeat", func() bool { return r.Stats().ResponsesIn == answered+1 })
	if st := s.Status(); st.State != "established" {
		t.Fatalf("state %s", st.State)
	}
}

// panickingInstaller panics on Stats once armed: a stand-in for any bug a
// packet might reach inside the session.
type panickingInstaller struct {
	*xfrm.Memory
	armed atomic.Bool
}

func (p *panickingInstaller) Stats(ctx context.Context, sa xfrm.SA) (xfrm.Counters, error) {
	if p.armed.Load() {
		panic("injected fault")
	}
	return p.Memory.Stats(ctx, sa)
}

// A panic inside the session releases its sockets and kernel SAs and
// policies, and Run reports it instead of crashing.
func TestPanicReleasesEverything(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, mem := testOptions(t, r)
	inst := &panickingInstaller{Memory: mem}
	opt.Installer = inst
	opt.StatusInterval = 20 * time.Millisecond
	s := newSession(t, tunnelConfig(r), opt)
	run := startRun(t, s)
	waitFor(t, "tunnel up", func() bool { return s.Status().State == "established" })
	local := s.Status().Local
	if len(mem.SAs()) != 2 || len(mem.Policies()) == 0 {
		t.Fatalf("installed: %v %v", mem.SAs(), mem.Policies())
	}

	inst.armed.Store(true)
	select {
	case <-run.Done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the panic")
	}
	err := run.Err
	if !errors.Is(err, ErrPanic) {
		t.Fatalf("Run() = %v, want ErrPanic", err)
	}
	if len(mem.SAs()) != 0 || len(mem.Policies()) != 0 {
		t.Fatalf("kernel state left after the panic: %v %v", mem.SAs(), mem.Policies())
	}
	if s.tr != nil {
		t.Fatal("transport still open after the panic")
	}
	// The IKE socket is closed: its port can be bound again. (The session's
	// socket has SO_REUSEADDR, this one has not, so binding fails while the
	// session's is open.)
	c, lerr := net.ListenUDP("udp", net.UDPAddrFromAddrPort(mustAddrPort(t, local)))
	if lerr != nil {
		t.Fatalf("IKE port %s still held after the panic: %v", local, lerr)
	}
	c.Close()
	if st := s.Status(); st.State != "down" || st.LastError == "" {
		t.Fatalf("status after the panic: %+v", st)
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// timedInstaller records when each SA was added and deleted.
type timedInstaller struct {
	*xfrm.Memory
	mu           sync.Mutex
	added, freed map[uint32]time.Time
	hard         map[uint32]time.Duration
}

func newTimedInstaller(mem *xfrm.Memory) *timedInstaller {
	return &timedInstaller{Memory: mem, added: map[uint32]time.Time{}, freed: map[uint32]time.Time{}, hard: map[uint32]time.Duration{}}
}

func (ti *timedInstaller) AddSA(ctx context.Context, sa xfrm.SA) error {
	ti.mu.Lock()
	ti.added[sa.SPI], ti.hard[sa.SPI] = time.Now(), sa.HardLife
	ti.mu.Unlock()
	return ti.Memory.AddSA(ctx, sa)
}

func (ti *timedInstaller) DelSA(ctx context.Context, sa xfrm.SA) error {
	ti.mu.Lock()
	ti.freed[sa.SPI] = time.Now()
	ti.mu.Unlock()
	return ti.Memory.DelSA(ctx, sa)
}

// Defect 2: an edge that refuses every rekey must not keep an SA past its
// lifetime. The session retries (with jitter) while there is time, then
// re-establishes from scratch before the Child SAs' hard expiry, and the
// IKE SA does not outlive ike_lifetime.
func TestPersistentRefusalReestablishes(t *testing.T) {
	tests := []struct {
		name     string
		h        ikeresp.Hostile
		ike, kid time.Duration
		refusals func(ikeresp.Stats) int
	}{
		{"child rekeys refused", ikeresp.Hostile{RefuseChildRekeys: message.TEMPORARY_FAILURE}, time.Hour, 4 * time.Second,
			func(st ikeresp.Stats) int { return st.RefusedChild }},
		{"IKE rekeys refused", ikeresp.Hostile{RefuseIKERekeys: message.NO_PROPOSAL_CHOSEN}, 4 * time.Second, time.Hour,
			func(st ikeresp.Stats) int { return st.RefusedIKE }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Hostile: tt.h})
			opt, mem := testOptions(t, r)
			inst := newTimedInstaller(mem)
			opt.Installer, opt.RetransmitTries, opt.RefusedRetry = inst, 2, 60*time.Millisecond
			s := newSession(t, tunnelConfig(r), opt)
			s.ikeLife, s.childLife = tt.ike, tt.kid // below the config's 1m minimum, for the test's sake
			startRun(t, s)
			waitFor(t, "re-establishment", func() bool { return r.Stats().Auths >= 2 })
			if n := tt.refusals(r.Stats()); n < 2 {
				t.Fatalf("%d refusals before giving up: no retry", n)
			}
			waitFor(t, "tunnel up again", func() bool { return s.Status().State == "established" })

			inst.mu.Lock()
			defer inst.mu.Unlock()
			first := time.Time{}
			for _, at := range inst.added {
				if first.IsZero() || at.Before(first) {
					first = at
				}
			}
			for spi, at := range inst.added {
				if !at.Equal(first) && at.Sub(first) > 10*time.Millisecond {
					continue // a later SA
				}
				gone, ok := inst.freed[spi]
				if !ok {
					t.Fatalf("first SA %08x never removed", spi)
				}
				if life := gone.Sub(at); life >= inst.hard[spi] || life >= tt.ike+tt.ike/10 {
					t.Fatalf("first SA %08x lived %v: past its hard lifetime %v or the IKE lifetime %v", spi, life, inst.hard[spi], tt.ike)
				}
			}
		})
	}
}

// Defect 8: unprotected IKE_SA_INIT answers forged from the edge's address
// race the real one. The real answer must win (RFC 7296 2.21.1); forged
// answers alone may steer us only within the COOKIE and INVALID_KE bounds.
func TestForgedInitAnswers(t *testing.T) {
	mlkem := []uint16{message.KE_MLKEM768}
	tests := []struct {
		name    string
		h       ikeresp.Hostile
		wantErr string // empty: established
	}{
		{"forged NO_PROPOSAL_CHOSEN", ikeresp.Hostile{ForgeInitError: message.NO_PROPOSAL_CHOSEN}, ""},
		{"forged AUTHENTICATION_FAILED", ikeresp.Hostile{ForgeInitError: message.AUTHENTICATION_FAILED}, ""},
		{"burst of forged cookies", ikeresp.Hostile{ForgeCookies: 10}, ""},
		{"forged INVALID_KE for a group we offer", ikeresp.Hostile{ForgeInvalidKE: message.KE_ECP384}, ""},
		{"everything forged at once", ikeresp.Hostile{ForgeCookies: 5, ForgeInitError: message.TEMPORARY_FAILURE, ForgeInvalidKE: message.KE_ECP256}, ""},
		{"only cookies", ikeresp.Hostile{ForgeCookies: 1, NoInitAnswer: true}, "keeps demanding cookies"},
		{"only oversized cookies", ikeresp.Hostile{ForgeCookies: 1, ForgeCookieLen: 65, NoInitAnswer: true}, "keeps demanding cookies (1, the last of 65 bytes)"},
		// One switch to the group asked for; the same request again is junk.
		{"only INVALID_KE", ikeresp.Hostile{ForgeInvalidKE: message.KE_ECP256, NoInitAnswer: true}, "peer did not answer"},
		{"only an error", ikeresp.Hostile{ForgeInitError: message.NO_PROPOSAL_CHOSEN, NoInitAnswer: true}, "responder refused IKE_SA_INIT: NO_PROPOSAL_CHOSEN: we offered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, ikeresp.Config{AddKE: mlkem, Hostile: tt.h})
			opt, mem := testOptions(t, r)
			s := newSession(t, tunnelConfig(r), opt)
			err := s.Establish(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Establish() = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Establish() = %v; a forged answer won", err)
			}
			if r.Stats().ForgedSent == 0 {
				t.Fatal("nothing was forged")
			}
			if st := s.Status(); st.KE != "x25519" {
				t.Fatalf("steered to %s by a forged INVALID_KE_PAYLOAD", st.KE)
			}
			checkKeysAgree(t, mem, r, 2)
		})
	}
}

// Defect 9: a nonce shorter than half the PRF's key size (RFC 7296 2.10) is
// refused; one just long enough is taken.
func TestPeerNonceLength(t *testing.T) {
	for _, tt := range []struct {
		n  int
		ok bool
	}{{16, false}, {23, false}, {24, true}, {256, true}} { // the codec refuses <16 and >256
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			// The responder picks our first PRF, prfsha384: 24 bytes at least.
			r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Hostile: ikeresp.Hostile{NonceLen: tt.n}})
			opt, _ := testOptions(t, r)
			s := newSession(t, tunnelConfig(r), opt)
			err := s.Establish(context.Background())
			if tt.ok != (err == nil) {
				t.Fatalf("Establish() with a %d-byte nonce = %v", tt.n, err)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("nonce is %d bytes; prfsha384 needs 24 to 256", tt.n)) {
				t.Fatalf("error does not explain the nonce: %v", err)
			}
		})
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return len(b) > 0
}

// Defect 10: keys of a replaced IKE SA, removed Child SAs and, on Close, the
// PSK copy are overwritten.
func TestKeysWiped(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	ctx := context.Background()
	if err := s.Establish(ctx); err != nil {
		t.Fatal(err)
	}
	old := s.ike.keys
	firstKids := []xfrm.SA{s.children[0].in, s.children[0].out}
	if err := s.rekeyIKE(ctx); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string][]byte{"SK_d": old.D, "SK_ei": old.Ei, "SK_er": old.Er, "SK_pi": old.Pi, "SK_pr": old.Pr} {
		if !allZero(k) {
			t.Errorf("replaced IKE SA's %s not wiped", name)
		}
	}
	if allZero(s.ike.keys.D) {
		t.Fatal("the new IKE SA's keys were wiped")
	}
	if err := s.rekeyChild(ctx, s.children[0]); err != nil {
		t.Fatal(err)
	}
	for _, sa := range firstKids {
		if !allZero(sa.Key) {
			t.Errorf("rekeyed child SA %08x: key not wiped", sa.SPI)
		}
	}
	cur, psk := s.ike.keys, s.auth.psk
	kids := []xfrm.SA{s.children[0].in, s.children[0].out}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !allZero(cur.Ei) || !allZero(psk) {
		t.Error("Close left the IKE keys or the PSK copy in memory")
	}
	for _, sa := range kids {
		if !allZero(sa.Key) {
			t.Errorf("child SA %08x: key not wiped on Close", sa.SPI)
		}
	}
}

// Defect 4: every fresh IKE_AUTH, not only the first of the process, carries
// INITIAL_CONTACT, so the edge drops what it kept of the dead IKE SA.
func TestInitialContactOnEveryEstablish(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if err := s.Establish(ctx); err != nil {
			t.Fatal(err)
		}
		if got := r.Stats().InitialContacts; got != i {
			t.Fatalf("establishment %d: %d IKE_AUTH with INITIAL_CONTACT", i, got)
		}
		s.teardown(ctx, false) // the path died: nothing reaches the edge
	}
}

// Defect 5: the Delete of the old IKE SA after a rekey survives lost
// packets: it has the normal retransmission schedule, not two tries.
func TestOldIKEDeleteRetransmitted(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Hostile: ikeresp.Hostile{LoseIKEDeletes: 2}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	ctx := context.Background()
	if err := s.Establish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.rekeyIKE(ctx); err != nil {
		t.Fatal(err)
	}
	if rs := r.Stats(); rs.DeletesLost != 2 || rs.DeletesIKE != 1 || rs.ActiveIKE != 1 {
		t.Fatalf("edge after the rekey: %d deletes lost, %d received, %d IKE SAs", rs.DeletesLost, rs.DeletesIKE, rs.ActiveIKE)
	}
}

// Defect 7 (selectors): an edge narrowing to many /32s is refused before
// any kernel policy is made.
func TestSelectorFloodRefused(t *testing.T) {
	cfg := validConfig()
	s, err := New(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := func(responder bool, n int, base string) *message.TS {
		out := &message.TS{Responder: responder}
		a := netip.MustParseAddr(base)
		for range n {
			out.Selectors = append(out.Selectors, message.SelectorFromPrefix(netip.PrefixFrom(a, 32)))
			a = a.Next()
		}
		return out
	}
	for _, tt := range []struct {
		local, remote int
		ok            bool
	}{{8, 8, true}, {1, 64, true}, {9, 8, false}, {200, 200, false}} {
		_, err := s.newChild([]message.Payload{ts(false, tt.local, "198.18.1.1"), ts(true, tt.remote, "198.19.0.1")}, 0x1000, []byte{0, 0, 0x10, 0}, suite{encrBits: 256})
		if (err == nil) != tt.ok {
			t.Errorf("%d x %d selectors: newChild() = %v", tt.local, tt.remote, err)
		}
	}
}

// injectPaced sends dgs from the edge's socket in small bursts, so that the
// session's socket buffer (which drops on overflow) takes every one of
// them.
func injectPaced(t *testing.T, r *ikeresp.Responder, dgs [][]byte) {
	t.Helper()
	for len(dgs) > 0 {
		n := min(16, len(dgs))
		if err := r.Inject(dgs[:n]...); err != nil {
			t.Fatal(err)
		}
		dgs = dgs[n:]
		time.Sleep(10 * time.Millisecond)
	}
}

// Authenticated fragments from the edge's own socket: a message that claims
// more than 128 fragments, or whose fragments add up to more than 64 KiB, is
// dropped and never answered, however genuine each fragment is; the edge's
// next real request with that Message ID is answered as usual.
func TestHostileFragments(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	run := startRun(t, s)
	waitFor(t, "tunnel up", func() bool { return s.Status().State == "established" })
	vendors := func(n, size int) []message.Payload {
		var ps []message.Payload
		for i := range n {
			ps = append(ps, &message.VendorID{Data: []byte(strings.Repeat(string(rune('a'+i%26)), size))})
		}
		return ps
	}
	for _, tc := range []struct {
		name  string
		ps    []message.Payload
		parts int
		total uint16
	}{
		{"200 fragments", vendors(10, 500), 200, 200},
		{"70 KiB in 100 fragments", vendors(70, 1000), 100, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := pinged(t, r)
			answered, dropped := r.Stats().ResponsesIn, s.Status().Dropped
			dgs, err := r.SealFragments(message.INFORMATIONAL, info.NextMID, tc.ps, tc.parts, tc.total)
			if err != nil {
				t.Fatal(err)
			}
			injectPaced(t, r, dgs)
			waitFor(t, "fragments dropped", func() bool { return s.Status().Dropped > dropped })
			// The edge's real request with the same Message ID: answered
			// once it is processed, and the queue is in order, so the
			// forged message was not answered if this is the only answer.
			if err := r.Ping(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "answer to the real request", func() bool { return r.Stats().ResponsesIn > answered })
			time.Sleep(50 * time.Millisecond)
			if got := r.Stats().ResponsesIn - answered; got != 1 {
				t.Fatalf("%d answers; the forged message must get none", got)
			}
			select {
			case <-run.Done:
				t.Fatalf("Run returned: %v", run.Err)
			default:
			}
		})
	}
}

// An edge that offers a classical-only rekey (NONE as every ADDKE) is
// refused with NO_PROPOSAL_CHOSEN: the rekey would downgrade the SA.
func TestEdgeRekeyAddKENoneRefused(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Hostile: ikeresp.Hostile{RekeyAddKENone: true}})
	opt, mem := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	startRun(t, s)
	waitFor(t, "tunnel up", func() bool { return s.Status().State == "established" })
	for _, ike := range []bool{false, true} {
		refused := r.Stats().RekeysRefused
		rekey := r.RekeyChild
		if ike {
			rekey = r.RekeyIKE
		}
		if err := rekey(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "refusal", func() bool { return r.Stats().RekeysRefused == refused+1 })
		if rs := r.Stats(); rs.LastRefusal != message.NO_PROPOSAL_CHOSEN || rs.OwnChildRekeys+rs.OwnIKERekeys != 0 {
			t.Fatalf("responder stats: %+v", rs)
		}
	}
	if st := s.Status(); st.State != "established" || st.ChildRekeys+st.IKERekeys != 0 || len(mem.SAs()) != 2 {
		t.Fatalf("status %+v, SAs %d", st, len(mem.SAs()))
	}
}

// TestRepeatedDeleteOfRekeyedIKESA: the edge rekeys the IKE SA and deletes
// the old one; our answer to that Delete is lost, so the edge repeats it.
// The repeat gets the same answer again although we have let the old SA
// go: otherwise the edge keeps it until it gives up retransmitting, as
// TestInteropLossyPath saw charon do. (ikeresp itself forgets the old SA
// when it sends the Delete; the test plays its retransmission.)
func TestRepeatedDeleteOfRekeyedIKESA(t *testing.T) {
	b, peer := bindtest.New(bindtest.DefaultAddrs)
	r := ikeresp.NewMemory(ikeresp.Config{ID: "edge.example", PSK: []byte(testPSK), AddKE: []uint16{message.KE_MLKEM768}}, peer)
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan struct{})
	go func() { r.Serve(ctx); close(served) }()
	t.Cleanup(func() { cancel(); <-served })
	s, err := New(tunnelConfig(r), Options{
		NewBind: func(context.Context, BindConfig) (Bind, error) { return b, nil },
		Logger:  slog.New(slog.NewTextHandler(t.Output(), nil)), RetransmitBase: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	waitFor(t, "tunnel", func() bool { return s.Status().State == StateEstablished.String() })
	oldSPIi, err := strconv.ParseUint(s.Status().SPIi, 16, 64)
	if err != nil {
		t.Fatal(err)
	}

	// The edge's INFORMATIONAL request on the old SA and our answers to it.
	var mu sync.Mutex
	var request []byte
	var answers [][]byte
	peer.SetLoss(func(toEdge bool, d bindtest.Datagram) bool {
		h, err := message.ParseHeader(d.B)
		if err != nil || h.SPIi != oldSPIi || h.Exchange != message.INFORMATIONAL {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case !toEdge && !h.IsResponse():
			request = bytes.Clone(d.B)
		case toEdge && h.IsResponse():
			answers = append(answers, bytes.Clone(d.B))
			return len(answers) == 1 // the first answer is lost
		}
		return false
	})
	seen := func() ([]byte, [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		return request, slices.Clone(answers)
	}
	if err := r.RekeyIKE(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "our answer to the Delete of the old IKE SA", func() bool { _, a := seen(); return len(a) == 1 })
	req, _ := seen()
	if err := peer.Send(false, req); err != nil { // the edge's retransmission
		t.Fatal(err)
	}
	waitFor(t, "the answer to the repeated Delete", func() bool { _, a := seen(); return len(a) == 2 })
	if _, a := seen(); !bytes.Equal(a[0], a[1]) {
		t.Fatal("the repeated Delete got another answer than the first")
	}
	if st := s.Status(); st.State != StateEstablished.String() || st.IKERekeys != 1 {
		t.Fatalf("status %+v", st)
	}
}

// injectInOrder sends dgs from the edge's socket and waits until the edge
// has had answers more responses: dgs must end with a datagram whose answer
// comes after the session processed the others (it reads the socket in
// order). At most 32 go at once, well within the session's 64-packet queue,
// so none is lost. It returns how many of dgs the session dropped.
func injectInOrder(t *testing.T, r *ikeresp.Responder, s *Session, dgs [][]byte, answers int) int {
	t.Helper()
	if len(dgs) > 32 {
		t.Fatalf("%d datagrams at once could overflow the session's queue", len(dgs))
	}
	answered, dropped := r.Stats().ResponsesIn, s.Status().Dropped
	if err := r.Inject(dgs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("%d answers", answers), func() bool { return r.Stats().ResponsesIn >= answered+answers })
	if got := r.Stats().ResponsesIn - answered; got != answers {
		t.Fatalf("%d answers to %d datagrams, want %d", got, len(dgs), answers)
	}
	return int(s.Status().Dropped - dropped)
}

// The datagrams of the edge's request that the session remembers (to tell
// a repeat of the request from a forged one) are bounded, whatever the edge
// sends: here an authenticated request in 3 fragments whose fragment 2
// comes 160 times, each freshly sealed. A repeated fragment is no error, so
// every copy gets past authentication and reassembly. The session answers
// the request once, stays up, and then remembers the first 129 of the 162
// datagrams (sk reassembles at most 128 fragments; one more for a whole
// message) and no others: a repeat of any other is dropped as a forgery.
func TestRequestDatagramsBounded(t *testing.T) {
	const copies, wantRemembered = 160, 128 + 1
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(t, r)
	s := newSession(t, tunnelConfig(r), opt)
	run := startRun(t, s)
	waitFor(t, "tunnel up", func() bool { return s.Status().State == StateEstablished.String() })
	info := pinged(t, r)
	if len(info.LastRequest) != 1 {
		t.Fatalf("the ping went as %d datagrams, want 1", len(info.LastRequest))
	}
	// Until the next request is answered, a repeat of the ping earns one
	// resend: the marker that the datagrams before it were processed.
	ping := info.LastRequest[0]

	ps := []message.Payload{&message.VendorID{Data: bytes.Repeat([]byte("a"), 100)},
		&message.VendorID{Data: bytes.Repeat([]byte("b"), 100)}, &message.VendorID{Data: bytes.Repeat([]byte("c"), 100)}}
	seal := func() [][]byte {
		dgs, err := r.SealFragments(message.INFORMATIONAL, info.NextMID, ps, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		return dgs
	}
	// Fragment 1 stays the request's first datagram, the one whose repeat
	// earns a resend once it is answered, however many fragments 2 come.
	whole := seal()
	request := [][]byte{whole[0]}
	for range copies {
		request = append(request, seal()[1])
	}
	request = append(request, whole[2])

	body := request[:len(request)-1]
	for len(body) > 0 {
		n := min(31, len(body))
		if d := injectInOrder(t, r, s, slices.Concat(body[:n], [][]byte{ping}), 1); d != 0 {
			t.Fatalf("%d authenticated fragments of the request dropped", d)
		}
		body = body[n:]
	}
	if d := injectInOrder(t, r, s, request[len(request)-1:], 1); d != 0 {
		t.Fatalf("the request's last fragment was dropped (%d)", d)
	}

	// Each datagram again, then fragment 1, which is remembered first and
	// earns a resend: a remembered datagram is ignored, any other dropped.
	remembered := []int{0}
	for i, d := range request[1:] {
		if injectInOrder(t, r, s, [][]byte{d, request[0]}, 1) == 0 {
			remembered = append(remembered, i+1)
		}
	}
	if len(remembered) != wantRemembered || remembered[len(remembered)-1] != wantRemembered-1 {
		t.Fatalf("the session remembers %d of the request's %d datagrams (the last at %d), want the first %d",
			len(remembered), len(request), remembered[len(remembered)-1], wantRemembered)
	}

	answered := r.Stats().ResponsesIn
	time.Sleep(50 * time.Millisecond)
	if got := r.Stats().ResponsesIn; got != answered {
		t.Fatalf("%d late answers", got-answered)
	}
	select {
	case <-run.Done:
		t.Fatalf("Run returned: %v", run.Err)
	default:
	}
	if st := s.Status(); st.State != StateEstablished.String() {
		t.Fatalf("state %s after the request", st.State)
	}
}

// Stopping the session in the middle of a dead-peer check (the edge went
// silent, our INFORMATIONAL is being retransmitted) is a stop, not a
// failure: maintain returns the context's error itself, as it does
// between exchanges, so Run does not report a lost peer on shutdown.
// TestInteropLossyPath saw "dead peer detection: context canceled".
func TestMaintainStoppedDuringDPD(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	cfg := tunnelConfig(r)
	cfg.DPDInterval = "1s"
	opt, _ := testOptions(t, r)
	opt.RetransmitTries = 100 // the check outlasts the test
	s := newSession(t, cfg, opt)
	if err := s.Establish(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.SetSilent(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.maintain(ctx) }()
	waitFor(t, "a dead-peer check being retransmitted", func() bool { return s.Status().Retransmits > 0 })
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("maintain stopped during a dead-peer check: %v, want context.Canceled itself", err)
	}
}
