package ike

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/bindtest"
	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// FuzzSessionDispatch drives the session's dispatch and the handlers of the
// edge's requests (INFORMATIONAL, CREATE_CHILD_SA, IKE_FOLLOWUP_KE, anything
// else) with an established tunnel: each input is one request of the edge,
// authenticated under the IKE SA's keys so that it reaches the handlers, or
// raw bytes that must not get past authentication. Whatever comes, the
// session must not panic, must answer at most once, and must keep its Child
// SAs, the kernel's SAs and the Child SA cap in step.

// fuzzEdge is an established session on an in-memory Bind, with the
// edge's side of the IKE SA's keys.
type fuzzEdge struct {
	s    *Session
	mem  *xfrm.Memory
	edge *sk.Cipher // the edge's outbound cipher: our inbound
}

func newFuzzEdge(t testing.TB, tr *transport) *fuzzEdge {
	cfg := &Config{LocalID: "branch1.example", RemoteID: "edge.example", Remote: tr.remoteAddr().String(),
		Auth: "psk", PSK: NewSecret(testPSK), AddKE: []string{"mlkem768"},
		LocalSubnets:  mustPrefixes("198.18.1.0/24"),
		RemoteSubnets: mustPrefixes("198.19.0.0/16")}
	mem := xfrm.NewMemory()
	s, err := New(cfg, Options{Installer: mem, Logger: slog.New(slog.DiscardHandler), RetransmitBase: time.Millisecond, RetransmitTries: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.tr = tr
	prf, err := keys.PRFByID(message.PRF_HMAC_SHA2_256)
	if err != nil {
		t.Fatal(err)
	}
	k := keys.IKE{D: bytes.Repeat([]byte{1}, 32), Ei: bytes.Repeat([]byte{2}, 36), Er: bytes.Repeat([]byte{3}, 36),
		Pi: bytes.Repeat([]byte{4}, 32), Pr: bytes.Repeat([]byte{5}, 32)}
	sa := &ikeSA{spii: 0x1111, spir: 0x2222, suite: suite{encrBits: 256, prf: prf, ke: message.KE_X25519, addke: []uint16{message.KE_MLKEM768}},
		ni: bytes.Repeat([]byte{6}, 32), nr: bytes.Repeat([]byte{7}, 32), nextMID: 2, peerMID: 1, created: time.Now(), rekeyAt: time.Now().Add(time.Hour)}
	if err := sa.setKeys(k); err != nil {
		t.Fatal(err)
	}
	s.ike = sa
	c := &childSA{spiIn: 0x1000, spiOut: 0x2000, encrBits: 256, local: cfg.LocalSubnets, remote: cfg.RemoteSubnets}
	s.deriveChild(c, sa, nil, sa.ni, sa.nr, true)
	if err := s.installChild(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	s.state = StateEstablished
	edge, err := sk.NewCipher(bytes.Repeat([]byte{3}, 36)) // SK_er: the original responder's
	if err != nil {
		t.Fatal(err)
	}
	return &fuzzEdge{s: s, mem: mem, edge: edge}
}

// request seals plain (an inner payload chain starting with first) as the
// edge's request: whole when it parses, else as fragment 1 of 1 so that the
// reassembler's parser meets it.
func (e *fuzzEdge) request(exch message.ExchangeType, mid uint32, first message.PayloadType, plain []byte) [][]byte {
	h := message.Header{SPIi: e.s.ike.spii, SPIr: e.s.ike.spir, Exchange: exch, MessageID: mid, Version: message.Version}
	if ps, err := message.ParsePayloads(first, plain); err == nil {
		if sealed, err := sk.Seal(h, ps, e.edge, 0); err == nil {
			return sealed.Datagrams
		}
	}
	return [][]byte{sk.SealFragment(h, first, 1, 1, plain, e.edge)}
}

// fuzzSeeds are requests an edge really sends on the fuzzEdge tunnel.
func fuzzSeeds(t testing.TB) [][]message.Payload {
	ke, err := kex.NewInitiator(message.KE_X25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nonce := &message.Nonce{Data: bytes.Repeat([]byte{9}, 32)}
	rekeyChild := []message.Payload{
		&message.Notify{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, 0x2000), NotifyType: message.REKEY_SA},
		&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtoESP, SPI: []byte{0, 0, 0x30, 0}, Transforms: []message.Transform{
			{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 256}, {Type: message.TransformKE, ID: message.KE_X25519},
			{Type: message.TransformADDKE1, ID: message.KE_MLKEM768}, {Type: message.TransformESN, ID: message.ESN_NONE}}}}},
		nonce, &message.KE{Group: message.KE_X25519, Data: ke.Public()},
		&message.TS{Selectors: []message.Selector{message.SelectorFromPrefix(netip.MustParsePrefix("198.19.0.0/16"))}},
		&message.TS{Responder: true, Selectors: []message.Selector{message.SelectorFromPrefix(netip.MustParsePrefix("198.18.1.0/24"))}},
	}
	rekeyIKE := []message.Payload{
		&message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: message.ProtoIKE, SPI: bytes.Repeat([]byte{8}, 8), Transforms: []message.Transform{
			{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 256}, {Type: message.TransformPRF, ID: message.PRF_HMAC_SHA2_256},
			{Type: message.TransformKE, ID: message.KE_X25519}, {Type: message.TransformADDKE1, ID: message.KE_MLKEM768}}}}},
		nonce, &message.KE{Group: message.KE_X25519, Data: ke.Public()},
	}
	return [][]message.Payload{
		nil, // liveness check
		{&message.Delete{Protocol: message.ProtoESP, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, 0x2000)}}},
		{&message.Delete{Protocol: message.ProtoIKE}},
		rekeyChild,
		rekeyIKE,
		{&message.KE{Group: message.KE_MLKEM768, Data: make([]byte, 1184)}, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: []byte("link")}},
	}
}

func FuzzSessionDispatch(f *testing.F) {
	// Nobody reads the answers: the Bind drops them once its queue is full.
	b, _ := bindtest.New(bindtest.DefaultAddrs)
	tr := newTransport(b)
	f.Cleanup(tr.close)

	exchanges := []message.ExchangeType{message.INFORMATIONAL, message.CREATE_CHILD_SA, message.IKE_FOLLOWUP_KE, message.IKE_AUTH}
	for i, ps := range fuzzSeeds(f) {
		first, plain, err := message.MarshalPayloads(nil, ps)
		if err != nil {
			f.Fatal(err)
		}
		for x := range exchanges {
			f.Add(uint8(x), uint8(1), uint8(first), plain, []byte(nil))
		}
		f.Add(uint8(i), uint8(0), uint8(first), plain, []byte{0})
	}
	f.Fuzz(func(t *testing.T, exch, mid, first uint8, plain, raw []byte) {
		e := newFuzzEdge(t, tr)
		s := e.s
		sa := s.ike
		var dgs [][]byte
		if len(raw) > 0 {
			dgs = [][]byte{raw} // unauthenticated: must be dropped
		} else {
			dgs = e.request(exchanges[int(exch)%len(exchanges)], uint32(mid%3), message.PayloadType(first), plain)
		}
		for _, d := range dgs {
			s.dispatch(t.Context(), packet{b: d, from: s.tr.remoteAddr()})
		}
		if len(raw) > 0 && (sa.peerMID != 1 || sa.lastResp != nil || s.fatal != nil) {
			t.Fatalf("unauthenticated bytes were taken as a request: peer mid %d, fatal %v", sa.peerMID, s.fatal)
		}
		if sa.peerMID > 2 {
			t.Fatalf("one request answered %d times", sa.peerMID-1)
		}
		if len(s.children) > maxChildSAs {
			t.Fatalf("%d child SAs, cap %d", len(s.children), maxChildSAs)
		}
		if n := len(e.mem.SAs()); n != 2*len(s.children) {
			t.Fatalf("%d kernel SAs for %d child SAs", n, len(s.children))
		}
		s.tr = nil // shared; not ours to close
		s.ike.wipe()
	})
}

// TestFuzzSeedsReachHandlers keeps FuzzSessionDispatch honest: its seeds
// get past authentication into the handlers, so the fuzzer starts from
// the edge-request code, not from the drop path.
func TestFuzzSeedsReachHandlers(t *testing.T) {
	seeds := fuzzSeeds(t)
	for _, tc := range []struct {
		name  string
		exch  message.ExchangeType
		seed  int
		check func(*fuzzEdge) bool
	}{
		{"liveness", message.INFORMATIONAL, 0, func(e *fuzzEdge) bool { return e.s.fatal == nil && e.s.ike.lastResp != nil }},
		{"delete child", message.INFORMATIONAL, 1, func(e *fuzzEdge) bool { return e.s.fatal != nil && len(e.s.children) == 0 }},
		{"delete IKE", message.INFORMATIONAL, 2, func(e *fuzzEdge) bool { return e.s.fatal != nil && e.s.ike.deleted }},
		{"rekey child", message.CREATE_CHILD_SA, 3, func(e *fuzzEdge) bool { return e.s.ike.peerCreate != nil && e.s.ike.peerCreate.old != nil }},
		{"rekey IKE", message.CREATE_CHILD_SA, 4, func(e *fuzzEdge) bool { return e.s.ike.peerCreate != nil && e.s.ike.peerCreate.spii != 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, peer := bindtest.New(bindtest.DefaultAddrs)
			tr := newTransport(b)
			defer tr.close()
			e := newFuzzEdge(t, tr)
			first, plain, err := message.MarshalPayloads(nil, seeds[tc.seed])
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range e.request(tc.exch, 1, first, plain) {
				e.s.dispatch(t.Context(), packet{b: d, from: tr.remoteAddr()})
			}
			if e.s.ike.peerMID != 2 || !tc.check(e) {
				t.Fatalf("seed did not reach its handler: peer mid %d, fatal %v, children %d", e.s.ike.peerMID, e.s.fatal, len(e.s.children))
			}
			// The edge got exactly one answer: a response to its request.
			if n := peer.Pending(); n != 1 {
				t.Fatalf("%d datagrams sent to the edge, want the one response", n)
			}
			d, err := peer.Recv(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			h, err := message.ParseHeader(d.B)
			if err != nil || d.NATPort || !h.IsResponse() || h.Exchange != tc.exch || h.MessageID != 1 {
				t.Fatalf("answer %+v (NAT port %v, err %v), want a response to %v mid 1 on the IKE port", h, d.NATPort, err, tc.exch)
			}
		})
	}
}
