package ike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Rekey collisions and the end of replaced Child SAs.
//
// Both ends may rekey the same SA at once. RFC 7296 2.25.1 and 2.25.2: each
// answers the other's rekey as usual, and once both exchanges are done
// (2.8.1, 2.8.2) the new SA created with the lowest of the four nonces is
// redundant and is deleted by the end that created it (initiated its
// exchange); the end that initiated the surviving exchange deletes the SA
// both replaced. For an IKE SA the Child SAs go with the surviving new IKE
// SA. Different kinds (our Child SA rekey against the edge's IKE SA rekey)
// are not the same SA: that request waits, refused with TEMPORARY_FAILURE.
//
// A Child SA the edge replaced goes when the edge deletes it. One that the
// edge never deletes is deleted by us after Options.DeleteGrace, and while
// maxChildSAs exist the edge's rekeys are refused: an authenticated but
// hostile edge rekeying without deleting cannot grow SAs without bound.

// maxChildSAs bounds the Child SAs of the tunnel: the one in use and the
// replaced ones waiting for their Delete.
const maxChildSAs = 4

// ourRekey is which of our rekeys is in progress.
type ourRekey uint8

const (
	ourRekeyNone ourRekey = iota
	ourRekeyChild
	ourRekeyIKE
)

func (r ourRekey) String() string {
	switch r {
	case ourRekeyNone:
		return "none"
	case ourRekeyChild:
		return "child"
	case ourRekeyIKE:
		return "ike"
	}
	return fmt.Sprintf("ourRekey(%d)", uint8(r))
}

// lowestNonce returns the lowest of nonces, octet by octet, a nonce that is
// a prefix of another being the lower (RFC 7296 2.8.1): bytes.Compare.
func lowestNonce(nonces ...[]byte) []byte {
	var low []byte
	for i, n := range nonces {
		if i == 0 || bytes.Compare(n, low) < 0 {
			low = n
		}
	}
	return low
}

// oursLoses reports whether, of two colliding rekey exchanges, ours (with
// nonces ni, nr) holds the lowest of the four nonces and so created the
// redundant SA. Equal lowest nonces (2^-256) count as ours losing on both
// ends; the SAs are then re-created by the next rekey or re-establishment.
func oursLoses(ni, nr, theirNi, theirNr []byte) bool {
	return bytes.Compare(lowestNonce(ni, nr), lowestNonce(theirNi, theirNr)) <= 0
}

// settleChildRekey decides, once a rekey of old is complete, which SAs go
// and who deletes them: deleteAt now for what we delete, after the grace
// for what the edge should delete (our fallback if it does not). Called
// after each of two colliding rekeys completes; the second call decides.
func (s *Session) settleChildRekey(old *childSA) {
	now := time.Now()
	var ours, theirs *childSA
	for _, c := range s.children {
		if c.rekeyOf != old {
			continue
		}
		if c.ours {
			ours = c
		} else {
			theirs = c
		}
	}
	old.replaced = true
	grace := now.Add(s.opt.DeleteGrace)
	switch {
	case ours != nil && theirs != nil && !slices.Contains(s.children, old):
		// We already deleted old (the edge's rekey of it outlasted
		// awaitPeerCreate): ours stands, the edge's late one is redundant.
		theirs.replaced, theirs.deleteAt = true, grace
	case ours != nil && theirs != nil:
		loser, winner := theirs, ours
		if oursLoses(ours.ni, ours.nr, theirs.ni, theirs.nr) {
			loser, winner = ours, theirs
		}
		loser.replaced = true
		loser.deleteAt, old.deleteAt = grace, grace
		if loser.ours {
			loser.deleteAt = now
		}
		if winner.ours {
			old.deleteAt = now
		}
		s.log.Info("simultaneous child SA rekey settled: the lowest nonce loses",
			"replaced", fmt.Sprintf("%08x", old.spiIn), "survivor", fmt.Sprintf("%08x", winner.spiIn),
			"redundant", fmt.Sprintf("%08x", loser.spiIn), "ours_survives", winner.ours)
	case ours != nil:
		old.deleteAt = now
	case theirs != nil:
		old.deleteAt = grace
	}
}

// pruneChildren deletes, at the edge and then in the kernel, the Child SAs
// whose deleteAt has come. An edge that no longer answers is an error.
func (s *Session) pruneChildren(ctx context.Context, now time.Time) error {
	var errs []error
	for _, c := range slices.Clone(s.children) {
		if c.deleteAt.IsZero() || now.Before(c.deleteAt) {
			continue
		}
		if !c.replaced {
			c.deleteAt = time.Time{} // still the one in use (settled otherwise meanwhile)
			continue
		}
		err := s.deleteChild(ctx, c)
		if slices.Contains(s.children, c) { // the edge may have deleted it meanwhile
			if rerr := s.removeChild(ctx, c); rerr != nil {
				s.log.Warn("removing replaced child SA", "spi_in", fmt.Sprintf("%08x", c.spiIn), "err", rerr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting replaced child SA %08x: %w", c.spiIn, err))
			break
		}
	}
	s.refreshStatus(ctx)
	return errors.Join(errs...)
}

// nextDelete is the earliest deleteAt among the Child SAs, or zero.
func (s *Session) nextDelete() time.Time {
	var next time.Time
	for _, c := range s.children {
		if !c.deleteAt.IsZero() && (next.IsZero() || c.deleteAt.Before(next)) {
			next = c.deleteAt
		}
	}
	return next
}

// awaitPeerCreate lets the edge's rekey on sa, half done when ours
// completed, finish (its IKE_FOLLOWUP_KE requests are answered here), so
// that both ends settle the collision with the same four nonces. It gives
// up after one exchange's timeout: the edge then learns from our Delete
// (RFC 7296 2.25: it forgets its own rekey of a deleted SA).
func (s *Session) awaitPeerCreate(ctx context.Context, sa *ikeSA) error {
	if sa.peerCreate == nil {
		return nil
	}
	deadline := time.Now().Add(s.exchangeTimeout())
	for sa.peerCreate != nil {
		p, ok, err := s.tr.receive(ctx, deadline)
		if err != nil || !ok {
			return err // nil at the deadline: the edge gave up on its rekey
		}
		s.dispatch(ctx, p)
		if s.fatal != nil {
			return s.fatal
		}
	}
	return nil
}
