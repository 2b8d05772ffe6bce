package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// CREATE_CHILD_SA and its IKE_FOLLOWUP_KE exchanges (RFC 7296 1.3, 2.8,
// RFC 9370 2.2.4), both ways: our rekeys of the Child SA (rekeyChild) and
// of the IKE SA (rekeyIKE), and our answers to the edge's (answerCreate,
// answerFollowupKE). Collisions between the two are settled in
// collision.go.

// rekeyChild replaces c with a new Child SA from a fresh hybrid exchange
// (CREATE_CHILD_SA + IKE_FOLLOWUP_KE), installing the new SAs before the
// old ones are deleted.
func (s *Session) rekeyChild(ctx context.Context, c *childSA) error {
	sa := s.ike
	s.rekeying = ourRekeyChild // an edge's rekey of c now collides (collision.go)
	defer func() { s.rekeying = ourRekeyNone }()
	spi := s.newESPSPI()
	ni := s.random(nonceLen)
	ke, err := kex.NewInitiator(sa.suite.ke, s.opt.Rand)
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	prop := s.pol.rekeyProposal(message.ProtoESP, binary.BigEndian.AppendUint32(nil, spi), suite{encrBits: c.encrBits, ke: sa.suite.ke, addke: sa.suite.addke})
	resp, _, err := s.request(ctx, sa, message.CREATE_CHILD_SA, []message.Payload{
		&message.Notify{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, c.spiIn), NotifyType: message.REKEY_SA},
		&message.SA{Proposals: []message.Proposal{prop}},
		&message.Nonce{Data: ni},
		&message.KE{Group: sa.suite.ke, Data: ke.Public()},
		s.selectors(false, c.local), s.selectors(true, c.remote),
	})
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	cs, peerSPI, shared, nr, err := s.completeCreate(ctx, sa, resp.Payloads, prop, ke)
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	nc, err := s.newChild(resp.Payloads, spi, peerSPI, cs)
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	nc.rekeyOf, nc.ours, nc.ni, nc.nr = c, true, ni, nr
	s.deriveChild(nc, sa, shared, ni, nr, true)
	keys.WipeAll(shared...)
	if err := s.installChild(ctx, nc); err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	s.update(func(st *Status) { st.ChildRekeys++ })
	// The edge's rekey of c, if half done, finishes first: both ends must
	// settle the collision on the same four nonces.
	if pc := sa.peerCreate; pc != nil && pc.old == c {
		if err := s.awaitPeerCreate(ctx, sa); err != nil {
			return fmt.Errorf("child SA rekey: %w", err)
		}
	}
	s.settleChildRekey(c)
	// Break only after make: the old SA kept carrying traffic until here.
	if err := s.pruneChildren(ctx, time.Now()); err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	return nil
}

// rekeyIKE replaces the IKE SA through CREATE_CHILD_SA with a fresh hybrid
// exchange, moves the Child SAs over and then deletes the old IKE SA.
func (s *Session) rekeyIKE(ctx context.Context) error {
	old := s.ike
	s.rekeying = ourRekeyIKE // an edge's rekey of old now collides (collision.go)
	defer func() { s.rekeying = ourRekeyNone }()
	spii := s.newIKESPI()
	ni := s.random(nonceLen)
	ke, err := kex.NewInitiator(old.suite.ke, s.opt.Rand)
	if err != nil {
		return fmt.Errorf("IKE SA rekey: %w", err)
	}
	prop := s.pol.rekeyProposal(message.ProtoIKE, binary.BigEndian.AppendUint64(nil, spii), old.suite)
	resp, _, err := s.request(ctx, old, message.CREATE_CHILD_SA, []message.Payload{
		&message.SA{Proposals: []message.Proposal{prop}},
		&message.Nonce{Data: ni},
		&message.KE{Group: old.suite.ke, Data: ke.Public()},
	})
	if err != nil {
		return fmt.Errorf("IKE SA rekey: %w", err)
	}
	ns, peerSPI, shared, nr, err := s.completeCreate(ctx, old, resp.Payloads, prop, ke)
	if err != nil {
		return fmt.Errorf("IKE SA rekey: %w", err)
	}
	spir := binary.BigEndian.Uint64(peerSPI)
	if spir == 0 {
		return fmt.Errorf("IKE SA rekey: responder SPI is zero")
	}
	// SKEYSEED with the old SA's PRF, the key material with the new one.
	seed := keys.SKEYSEEDRekey(old.suite.prf, old.keys.D, shared, ni, nr)
	sa := &ikeSA{spii: spii, spir: spir, suite: ns, ni: ni, nr: nr, fragments: old.fragments}
	err = sa.setKeys(keys.Derive(ns.prf, seed, ni, nr, spii, spir, keys.Lengths{Enc: ns.encKeyLen()}))
	keys.WipeAll(append(shared, seed)...)
	if err != nil {
		return fmt.Errorf("IKE SA rekey: new keys: %w", err)
	}
	now := time.Now()
	sa.created, sa.rekeyAt = now, now.Add(s.jitter(s.ikeLife*9/10))
	// The edge's rekey of old, if half done, finishes first: both ends
	// must settle the collision on the same four nonces (RFC 7296 2.8.2).
	if err := s.awaitPeerCreate(ctx, old); err != nil {
		sa.wipe()
		return fmt.Errorf("IKE SA rekey: %w", err)
	}
	if theirs := s.ike; theirs != old {
		// The edge rekeyed old too; its new IKE SA is s.ike, old is s.old.
		if oursLoses(ni, nr, theirs.ni, theirs.nr) {
			// Ours is redundant: we delete it; the edge, whose SA
			// survives with the Child SAs, deletes old.
			s.log.Info("simultaneous IKE SA rekey: ours has the lowest nonce and goes", "spi_i", fmt.Sprintf("%016x", sa.spii))
			s.deleteIKE(ctx, sa)
			sa.wipe()
			return nil
		}
		// The edge's is redundant: it deletes it (we keep answering on it
		// until then), we delete old, and the Child SAs stay with ours.
		s.log.Info("simultaneous IKE SA rekey: the edge's has the lowest nonce; ours survives", "spi_i", fmt.Sprintf("%016x", sa.spii))
		s.redundant.wipe()
		s.redundant = theirs
		s.ike = sa
		s.deleteIKE(ctx, old)
		if s.old == old {
			old.wipe()
			s.old = nil
		}
	} else {
		s.ike, s.old = sa, old
		s.deleteIKE(ctx, old)
		old.wipe()
		s.old = nil
	}
	s.update(func(st *Status) {
		st.IKERekeys++
		st.KE, st.AddKE, st.Encr, st.PRF = kex.Name(ns.ke), ns.addkeNames(), ns.encrName(), ns.prf.Name
	})
	s.refreshStatus(ctx)
	return nil
}

// completeCreate validates a CREATE_CHILD_SA response, completes KE(0) and
// runs the IKE_FOLLOWUP_KE exchanges for the additional key exchanges.
// It returns the negotiated suite, the responder's SPI and SK(0..n).
func (s *Session) completeCreate(ctx context.Context, sa *ikeSA, resp []message.Payload, prop message.Proposal, ke kex.Initiator) (suite, []byte, [][]byte, []byte, error) {
	if n := message.FirstError(resp); n != nil {
		return suite{}, nil, nil, nil, &ErrRefused{Exchange: message.CREATE_CHILD_SA, Notify: n.NotifyType}
	}
	cs, peerSPI, err := s.pol.selectSuite(message.Find[*message.SA](resp), prop)
	if err != nil {
		return suite{}, nil, nil, nil, err
	}
	nonce := message.Find[*message.Nonce](resp)
	kr := message.Find[*message.KE](resp)
	if nonce == nil || kr == nil || kr.Group != cs.ke {
		return suite{}, nil, nil, nil, errors.New("response lacks nonce or matching KE payload")
	}
	if err := checkNonce(sa.suite.prf, nonce.Data); err != nil {
		return suite{}, nil, nil, nil, err
	}
	shared0, err := ke.Complete(kr.Data)
	if err != nil {
		return suite{}, nil, nil, nil, err
	}
	shared := [][]byte{shared0}
	link := message.FindNotify(resp, message.ADDITIONAL_KEY_EXCHANGE)
	for i, method := range cs.addke {
		if link == nil {
			return suite{}, nil, nil, nil, fmt.Errorf("no ADDITIONAL_KEY_EXCHANGE link for ADDKE%d", i+1)
		}
		ss, next, err := s.followupKE(ctx, sa, method, link.Data)
		if err != nil {
			return suite{}, nil, nil, nil, fmt.Errorf("IKE_FOLLOWUP_KE %d: %w", i+1, err)
		}
		shared, link = append(shared, ss), next
	}
	return cs, peerSPI, shared, nonce.Data, nil
}

// followupKE runs one IKE_FOLLOWUP_KE exchange (RFC 9370 2.2.4).
func (s *Session) followupKE(ctx context.Context, sa *ikeSA, method uint16, link []byte) ([]byte, *message.Notify, error) {
	ke, err := kex.NewInitiator(method, s.opt.Rand)
	if err != nil {
		return nil, nil, err
	}
	resp, _, err := s.request(ctx, sa, message.IKE_FOLLOWUP_KE, []message.Payload{
		&message.KE{Group: method, Data: ke.Public()},
		&message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: link},
	})
	if err != nil {
		return nil, nil, err
	}
	if n := message.FirstError(resp.Payloads); n != nil {
		return nil, nil, &ErrRefused{Exchange: message.IKE_FOLLOWUP_KE, Notify: n.NotifyType}
	}
	kr := message.Find[*message.KE](resp.Payloads)
	if kr == nil || kr.Group != method {
		return nil, nil, fmt.Errorf("response lacks a %s KE payload", kex.Name(method))
	}
	ss, err := ke.Complete(kr.Data)
	if err != nil {
		return nil, nil, err
	}
	return ss, message.FindNotify(resp.Payloads, message.ADDITIONAL_KEY_EXCHANGE), nil
}

// Rekeys the edge starts. We are the responder of these exchanges:
//
//	edge                                     us
//	CREATE_CHILD_SA  SA, Ni, KEi(0) [N(REKEY_SA), TSi, TSr]  ->
//	          <-  SA, Nr, KEr(0), N(ADDITIONAL_KEY_EXCHANGE)(link) [TSi, TSr]
//	IKE_FOLLOWUP_KE  KEi(1), N(ADDITIONAL_KEY_EXCHANGE)(link)  ->
//	          <-  KEr(1) [, N(ADDITIONAL_KEY_EXCHANGE)(link2) for KEi(2)]
//	...
//
// After the last key exchange we install the new Child SA (its old one keeps
// carrying traffic until the edge deletes it) or switch to the new IKE SA
// (the edge then deletes the old one). answerCreate and answerFollowupKE run
// inside dispatch; the state between them is ikeSA.peerCreate.

// peerCreateTimeout is how long a half-done rekey of the edge is kept
// waiting for its next IKE_FOLLOWUP_KE.
const peerCreateTimeout = 30 * time.Second

// peerCreate is a CREATE_CHILD_SA of the edge waiting for its additional
// key exchanges (RFC 9370 2.2.4).
type peerCreate struct {
	last    time.Time // when the edge last moved it on (its latest request)
	probed  bool      // a stall already prompted a liveness check
	suite   suite
	link    []byte   // the ADDITIONAL_KEY_EXCHANGE data the next request must echo
	pending []uint16 // additional key exchanges still to come, in order
	shared  [][]byte // SK(0), SK(1), ...
	ni, nr  []byte   // ni is the edge's

	old           *childSA // a Child SA rekey: the SA it replaces ...
	spiIn, spiOut uint32   // ... and the new SPIs
	spii, spir    uint64   // an IKE SA rekey: the edge's new SPI and ours
}

func refuse(t message.NotifyType) []message.Payload {
	return []message.Payload{&message.Notify{NotifyType: t}}
}

// answerCreate answers the edge's CREATE_CHILD_SA: a rekey of our Child SA
// (N(REKEY_SA)) or of the IKE SA. We accept only the suite in use, with a
// fresh exchange of every negotiated method, the same rule as for our own
// rekeys, so the edge cannot downgrade the SA.
func (s *Session) answerCreate(ctx context.Context, sa *ikeSA, ps []message.Payload) []message.Payload {
	if sa != s.ike || sa.peerCreate != nil {
		// The SA is going away (RFC 7296 2.25: TEMPORARY_FAILURE), or
		// the edge broke its own window of one.
		return refuse(message.TEMPORARY_FAILURE)
	}
	saP, nonce, ke := message.Find[*message.SA](ps), message.Find[*message.Nonce](ps), message.Find[*message.KE](ps)
	if saP == nil || nonce == nil || ke == nil || checkNonce(sa.suite.prf, nonce.Data) != nil {
		return refuse(message.INVALID_SYNTAX)
	}
	pc := &peerCreate{last: time.Now(), ni: nonce.Data, nr: s.random(nonceLen)}
	proto := message.ProtoIKE
	if rekey := message.FindNotify(ps, message.REKEY_SA); rekey != nil {
		if rekey.Protocol != message.ProtoESP || len(rekey.SPI) != 4 {
			return refuse(message.INVALID_SYNTAX)
		}
		spi := binary.BigEndian.Uint32(rekey.SPI) // the edge's inbound SPI: our outbound
		i := slices.IndexFunc(s.children, func(c *childSA) bool { return c.spiOut == spi && !c.replaced })
		if i < 0 {
			return []message.Payload{&message.Notify{Protocol: message.ProtoESP, SPI: rekey.SPI, NotifyType: message.CHILD_SA_NOT_FOUND}}
		}
		switch {
		case s.rekeying == ourRekeyIKE:
			// Not the SA we are rekeying: the edge retries on the new
			// IKE SA (RFC 7296 2.25).
			return refuse(message.TEMPORARY_FAILURE)
		case len(s.children) >= maxChildSAs:
			// The edge rekeys faster than it deletes what it replaced.
			s.log.Warn("edge's child SA rekey refused: too many child SAs await its Delete", "child_sas", len(s.children))
			return refuse(message.TEMPORARY_FAILURE)
		}
		// A rekey of ours of the same SA may be running: answered as
		// usual, and settled by the nonces once both are done (2.8.1).
		pc.old, proto = s.children[i], message.ProtoESP
		pc.suite = suite{encrBits: pc.old.encrBits, ke: sa.suite.ke, addke: sa.suite.addke}
	} else {
		if !slices.ContainsFunc(saP.Proposals, func(p message.Proposal) bool { return p.Protocol == message.ProtoIKE }) {
			return refuse(message.NO_ADDITIONAL_SAS) // a second Child SA: we carry one per tunnel
		}
		if s.rekeying == ourRekeyChild {
			return refuse(message.TEMPORARY_FAILURE) // not the SA we are rekeying
		}
		pc.suite = sa.suite
	}
	chosen, ok := chooseRekey(saP, proto, pc.suite)
	if !ok {
		return refuse(message.NO_PROPOSAL_CHOSEN)
	}
	if ke.Group != pc.suite.ke {
		return []message.Payload{&message.Notify{NotifyType: message.INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, pc.suite.ke)}}
	}
	pub, shared, err := kex.Respond(ke.Group, ke.Data, s.opt.Rand)
	if err != nil {
		s.log.Warn("edge's rekey: bad KE payload", "err", err)
		return refuse(message.INVALID_SYNTAX)
	}
	pc.shared, pc.pending = [][]byte{shared}, slices.Clone(pc.suite.addke)

	resp := []message.Payload{nil, &message.Nonce{Data: pc.nr}, &message.KE{Group: ke.Group, Data: pub}}
	switch proto {
	case message.ProtoESP:
		pc.spiOut, pc.spiIn = binary.BigEndian.Uint32(chosen.SPI), s.newESPSPI()
		if pc.spiOut < 256 {
			return refuse(message.INVALID_SYNTAX)
		}
		chosen.SPI = binary.BigEndian.AppendUint32(nil, pc.spiIn)
		// The edge initiates: its side is TSi. The selectors stay those of the old SA.
		resp = append(resp, s.selectors(false, pc.old.remote), s.selectors(true, pc.old.local))
	case message.ProtoIKE:
		pc.spii, pc.spir = binary.BigEndian.Uint64(chosen.SPI), s.newIKESPI()
		if pc.spii == 0 {
			return refuse(message.INVALID_SYNTAX)
		}
		chosen.SPI = binary.BigEndian.AppendUint64(nil, pc.spir)
	}
	resp[0] = &message.SA{Proposals: []message.Proposal{chosen}}
	if len(pc.pending) > 0 {
		pc.link = s.random(8)
		sa.peerCreate = pc
		return append(resp, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: pc.link})
	}
	if err := s.completePeerCreate(ctx, sa, pc); err != nil {
		s.log.Warn("edge's rekey failed", "err", err)
		return refuse(message.TEMPORARY_FAILURE)
	}
	return resp
}

// answerFollowupKE answers one IKE_FOLLOWUP_KE of the edge's rekey and
// completes the rekey after the last one.
func (s *Session) answerFollowupKE(ctx context.Context, sa *ikeSA, ps []message.Payload) []message.Payload {
	pc := sa.peerCreate
	link := message.FindNotify(ps, message.ADDITIONAL_KEY_EXCHANGE)
	if pc == nil || link == nil || !bytes.Equal(link.Data, pc.link) {
		return refuse(message.STATE_NOT_FOUND)
	}
	ke := message.Find[*message.KE](ps)
	if ke == nil || ke.Group != pc.pending[0] {
		sa.peerCreate = nil
		return refuse(message.INVALID_SYNTAX)
	}
	pub, shared, err := kex.Respond(ke.Group, ke.Data, s.opt.Rand)
	if err != nil {
		sa.peerCreate = nil
		s.log.Warn("edge's rekey: bad KE payload", "err", err)
		return refuse(message.INVALID_SYNTAX)
	}
	pc.shared, pc.pending, pc.last = append(pc.shared, shared), pc.pending[1:], time.Now()
	resp := []message.Payload{&message.KE{Group: ke.Group, Data: pub}}
	if len(pc.pending) > 0 {
		pc.link = s.random(8)
		return append(resp, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: pc.link})
	}
	sa.peerCreate = nil
	if err := s.completePeerCreate(ctx, sa, pc); err != nil {
		s.log.Warn("edge's rekey failed", "err", err)
		return refuse(message.TEMPORARY_FAILURE)
	}
	return resp
}

// completePeerCreate derives the keys of the edge's rekey once every key
// exchange is done and puts the new SA in place.
func (s *Session) completePeerCreate(ctx context.Context, sa *ikeSA, pc *peerCreate) error {
	if pc.old != nil {
		// Make before break: the new pair goes in now, the old one stays
		// until the edge deletes it (it initiated, so it does).
		nc := &childSA{spiIn: pc.spiIn, spiOut: pc.spiOut, encrBits: pc.suite.encrBits, local: pc.old.local, remote: pc.old.remote,
			rekeyOf: pc.old, ni: pc.ni, nr: pc.nr}
		s.deriveChild(nc, sa, pc.shared, pc.ni, pc.nr, false)
		keys.WipeAll(pc.shared...)
		if err := s.installChild(ctx, nc); err != nil {
			return fmt.Errorf("installing child SA: %w", err)
		}
		s.settleChildRekey(pc.old)
		s.update(func(st *Status) { st.ChildRekeys++ })
		s.refreshStatus(ctx)
		return nil
	}
	// The edge becomes the original initiator of the new IKE SA. SKEYSEED
	// with the old SA's PRF and SK_d, the key material with the new suite.
	seed := keys.SKEYSEEDRekey(sa.suite.prf, sa.keys.D, pc.shared, pc.ni, pc.nr)
	ns := &ikeSA{spii: pc.spii, spir: pc.spir, responder: true, suite: pc.suite, ni: pc.ni, nr: pc.nr, fragments: sa.fragments}
	err := ns.setKeys(keys.Derive(ns.suite.prf, seed, pc.ni, pc.nr, pc.spii, pc.spir, keys.Lengths{Enc: ns.suite.encKeyLen()}))
	keys.WipeAll(append(pc.shared, seed)...)
	if err != nil {
		return err
	}
	now := time.Now()
	ns.created, ns.rekeyAt = now, now.Add(s.jitter(s.ikeLife*9/10))
	if s.old != nil && s.old != sa {
		s.old.wipe() // an older IKE SA the edge never deleted
	}
	s.ike, s.old = ns, sa
	s.update(func(st *Status) {
		st.IKERekeys++
		st.KE, st.AddKE, st.Encr, st.PRF = kex.Name(ns.suite.ke), ns.suite.addkeNames(), ns.suite.encrName(), ns.suite.prf.Name
	})
	s.refreshStatus(ctx)
	s.log.Info("IKE SA rekeyed by the edge", "spi_i", fmt.Sprintf("%016x", ns.spii), "spi_r", fmt.Sprintf("%016x", ns.spir))
	return nil
}

// chooseRekey picks, from the edge's proposals for proto, one that offers
// exactly want: its AES-GCM key size, PRF (IKE), KE group and every ADDKE
// method in order (ADDKE types beyond those only with NONE), and no ESN.
func chooseRekey(sa *message.SA, proto message.Protocol, want suite) (message.Proposal, bool) {
	wantSPI := map[message.Protocol]int{message.ProtoIKE: 8, message.ProtoESP: 4}[proto]
	for _, p := range sa.Proposals {
		if p.Protocol != proto || len(p.SPI) != wantSPI {
			continue
		}
		picks := []message.Transform{
			{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: want.encrBits},
			{Type: message.TransformKE, ID: want.ke},
		}
		if proto == message.ProtoIKE {
			picks = append(picks, message.Transform{Type: message.TransformPRF, ID: want.prf.ID})
		} else {
			picks = append(picks, message.Transform{Type: message.TransformESN, ID: message.ESN_NONE})
		}
		for typ := message.TransformADDKE1; typ <= message.TransformADDKE7; typ++ {
			i := int(typ - message.TransformADDKE1)
			switch {
			case i < len(want.addke):
				picks = append(picks, message.Transform{Type: typ, ID: want.addke[i]})
			case offeredTypes(p)[typ]:
				picks = append(picks, message.Transform{Type: typ, ID: message.KE_NONE})
			}
		}
		ok := true
		for _, t := range picks {
			if !slices.Contains(p.Transforms, t) {
				ok = false
				break
			}
		}
		// Every type the edge offers must be one we answer.
		for typ := range offeredTypes(p) {
			if !slices.ContainsFunc(picks, func(t message.Transform) bool { return t.Type == typ }) {
				ok = false
			}
		}
		if ok {
			return message.Proposal{Num: p.Num, Protocol: proto, SPI: p.SPI, Transforms: picks}, true
		}
	}
	return message.Proposal{}, false
}
