package ike

import (
	"context"
	"errors"
	"time"
)

// retryRefused is how long to wait after the edge refused a rekey
// (TEMPORARY_FAILURE, a collision) before trying again.
const retryRefused = 10 * time.Second

// maintain keeps an established tunnel: it answers the edge, rekeys the
// Child SA and IKE SA before their lifetimes end, and probes liveness.
// It returns when the tunnel is lost; the caller re-establishes.
func (s *Session) maintain(ctx context.Context) error {
	// Byte counters live in the kernel; read them now and then so that
	// Status (and the status page) shows traffic, not the last IKE event.
	refreshAt := time.Now().Add(s.opt.StatusInterval)
	for {
		now := time.Now()
		next := s.ike.rekeyAt
		if refreshAt.Before(next) {
			next = refreshAt
		}
		for _, c := range s.children {
			if !c.replaced && c.rekeyAt.Before(next) {
				next = c.rekeyAt
			}
		}
		if s.dpd > 0 {
			if d := s.lastRecv.Add(s.dpd); d.Before(next) {
				next = d
			}
		}
		timer := time.NewTimer(max(next.Sub(now), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case p := <-s.tr.in:
			timer.Stop()
			s.tr.recvd++
			s.tr.bytesRecvd += uint64(len(p.b))
			s.dispatch(p)
		case <-timer.C:
			now := time.Now()
			if !now.Before(refreshAt) {
				s.refreshStatus(ctx)
				refreshAt = now.Add(s.opt.StatusInterval)
			}
			if err := s.due(ctx, now); err != nil {
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
		if now.Sub(pc.started) < peerCreateTimeout {
			s.postponeRekeys(now)
		} else {
			s.ike.peerCreate = nil // the edge gave up on it
		}
	}
	if !now.Before(s.ike.rekeyAt) {
		if err := s.rekeyIKE(ctx); err != nil {
			return s.afterFailedRekey(err, func() { s.ike.rekeyAt = time.Now().Add(retryRefused) })
		}
		return nil
	}
	for _, c := range s.children {
		if !c.replaced && !now.Before(c.rekeyAt) {
			if err := s.rekeyChild(ctx, c); err != nil {
				return s.afterFailedRekey(err, func() { c.rekeyAt = time.Now().Add(retryRefused) })
			}
			return nil
		}
	}
	if s.dpd > 0 && !now.Before(s.lastRecv.Add(s.dpd)) {
		return s.checkLiveness(ctx)
	}
	return nil
}

// afterFailedRekey keeps the tunnel when the edge merely refused (it may
// be rekeying itself), and gives up on it when the edge is gone.
func (s *Session) afterFailedRekey(err error, retry func()) error {
	var refused *ErrRefused
	if errors.As(err, &refused) {
		s.log.Warn("rekey refused, retrying later", "err", err)
		s.setError(err)
		retry()
		return nil
	}
	return err
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
