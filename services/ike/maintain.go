package ike

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrRekeyRefused reports that the edge kept refusing a rekey until the SA
// was about to expire; the tunnel is re-established from scratch.
var ErrRekeyRefused = errors.New("rekey refused until the SA's lifetime ran out")

// maintain keeps an established tunnel: it answers the edge, rekeys the
// Child SA and IKE SA before their lifetimes end, and probes liveness.
// It returns when the tunnel is lost; the caller re-establishes.
func (s *Session) maintain(ctx context.Context) error {
	// Byte counters live in the kernel; read them now and then so that
	// Status (and the status page) shows traffic, not the last IKE event.
	refreshAt := time.Now().Add(s.opt.StatusInterval)
	for {
		next := s.ike.rekeyAt
		if refreshAt.Before(next) {
			next = refreshAt
		}
		for _, c := range s.children {
			if !c.replaced && c.rekeyAt.Before(next) {
				next = c.rekeyAt
			}
		}
		if d := s.nextDelete(); !d.IsZero() && d.Before(next) {
			next = d
		}
		if pc := s.ike.peerCreate; pc != nil {
			d := pc.last.Add(peerCreateTimeout)
			if !pc.probed {
				d = pc.last.Add(s.peerStall())
			}
			if d.Before(next) {
				next = d
			}
		}
		if s.dpd > 0 {
			if d := s.lastRecv.Add(s.dpd); d.Before(next) {
				next = d
			}
		}
		p, ok, err := s.tr.receive(ctx, next)
		switch {
		case err != nil:
			return err
		case ok:
			s.dispatch(ctx, p)
		default:
			now := time.Now()
			if !now.Before(refreshAt) {
				s.refreshStatus(ctx)
				refreshAt = now.Add(s.opt.StatusInterval)
			}
			if err := s.due(ctx, now); err != nil {
				if ctx.Err() != nil {
					// Stopped mid-exchange: a stop, not a lost peer.
					return ctx.Err()
				}
				return err
			}
		}
		if s.fatal != nil {
			return s.fatal
		}
	}
}

// due runs whatever timer has expired. While the edge is in the middle of
// a rekey of its own (waiting for IKE_FOLLOWUP_KE), ours wait: RFC 7296
// 2.25 lets the edge refuse them, and its rekey replaces the SA anyway.
func (s *Session) due(ctx context.Context, now time.Time) error {
	if pc := s.ike.peerCreate; pc != nil {
		switch stalled := now.Sub(pc.last); {
		case stalled >= peerCreateTimeout:
			s.ike.peerCreate = nil // the edge gave up on it
		case stalled >= s.peerStall() && !pc.probed:
			// The edge should have sent its next IKE_FOLLOWUP_KE within
			// a round trip. It may have restarted mid-rekey: find out
			// now rather than at the next DPD interval.
			pc.probed = true
			s.log.Info("edge's rekey stalled; checking liveness", "waited", stalled.Round(time.Millisecond))
			if err := s.checkLiveness(ctx); err != nil {
				return err
			}
			if s.ike.peerCreate != nil {
				s.postponeRekeys(now)
			}
		default:
			s.postponeRekeys(now)
		}
	}
	if err := s.pruneChildren(ctx, now); err != nil {
		return err
	}
	if !now.Before(s.ike.rekeyAt) {
		sa := s.ike
		if err := s.rekeyIKE(ctx); err != nil {
			return s.afterFailedRekey(fmt.Errorf("IKE SA %016x: %w", sa.spii, err), sa.created.Add(s.ikeLife), &sa.rekeyAt)
		}
		return nil
	}
	for _, c := range s.children {
		if !c.replaced && !now.Before(c.rekeyAt) {
			if err := s.rekeyChild(ctx, c); err != nil {
				// Soft expiry: the kernel drops the SA at its hard
				// lifetime, 10% later, so re-establishing now keeps it
				// from carrying traffic on an expired key or none.
				return s.afterFailedRekey(fmt.Errorf("child SA %08x: %w", c.spiIn, err), c.created.Add(s.childLife), &c.rekeyAt)
			}
			return nil
		}
	}
	if s.dpd > 0 && !now.Before(s.lastRecv.Add(s.dpd)) {
		return s.checkLiveness(ctx)
	}
	return nil
}

// afterFailedRekey keeps the tunnel when the edge merely refused (it may be
// rekeying itself, or short of resources) and retries at *rekeyAt, but only
// while a retry can still finish before expires: a refusal must not carry
// the SA past its lifetime. Then, or when the edge is gone, it returns an
// error and the tunnel is re-established from scratch.
func (s *Session) afterFailedRekey(err error, expires time.Time, rekeyAt *time.Time) error {
	var refused *ErrRefused
	if !errors.As(err, &refused) {
		return err
	}
	// Random in [½, 1] of the interval: two ends that refuse each other's
	// rekeys do not retry in lock step forever.
	retry := s.opt.RefusedRetry/2 + s.jitterUpTo(s.opt.RefusedRetry/2)
	next := time.Now().Add(retry)
	// A retry is a full exchange: leave it room to time out before expiry.
	if !next.Add(s.exchangeTimeout()).Before(expires) {
		return fmt.Errorf("%w (expires %s): %w", ErrRekeyRefused, expires.Format(time.TimeOnly), err)
	}
	s.log.Warn("rekey refused, retrying", "err", err, "in", retry.Round(time.Millisecond), "expires", expires.Format(time.TimeOnly))
	s.setError(err)
	*rekeyAt = next
	return nil
}

// peerStall is how long the edge's half-done rekey may wait for its next
// request before we check that the edge is still there: two of our first
// retransmission timeouts, generous for one round trip.
func (s *Session) peerStall() time.Duration { return 2 * s.opt.RetransmitBase }

// exchangeTimeout is how long one request may take with every retransmission.
func (s *Session) exchangeTimeout() time.Duration {
	var d time.Duration
	t := s.opt.RetransmitBase
	for range s.opt.RetransmitTries {
		d += t
		t = min(2*t, s.opt.RetransmitMax)
	}
	return d
}

// postponeRekeys moves rekeys that are due by now a little into the future.
func (s *Session) postponeRekeys(now time.Time) {
	later := now.Add(s.opt.RetransmitBase)
	if !now.Before(s.ike.rekeyAt) {
		s.ike.rekeyAt = later
	}
	for _, c := range s.children {
		if !now.Before(c.rekeyAt) {
			c.rekeyAt = later
		}
	}
}
