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
	s.rekeying = true // the edge's own rekeys wait until this one is done
	defer func() { s.rekeying = false }()
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
	if err := sa.setKeys(keys.Derive(ns.prf, seed, ni, nr, spii, spir, keys.Lengths{Enc: ns.encKeyLen()})); err != nil {
		return err
	}
	now := time.Now()
	sa.created, sa.rekeyAt = now, now.Add(s.jitter(s.ikeLife*9/10))
	s.ike, s.old = sa, old
	s.deleteIKE(ctx, old)
	s.old = nil
	s.update(func(st *Status) {
		st.IKERekeys++
		st.KE, st.AddKE, st.Encr, st.PRF = kex.Name(ns.ke), ns.addkeNames(), ns.encrName(), ns.prf.Name
	})
	s.refreshStatus(ctx)
	return nil
}
