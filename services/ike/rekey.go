package ike

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

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
		return err
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
		return err
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
