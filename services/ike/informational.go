package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// INFORMATIONAL (RFC 7296 1.4, 2.4, 2.21.2), both ways: our liveness
// checks and Deletes, the AUTHENTICATION_FAILED after a refused IKE_AUTH,
// and our answers to the edge's Deletes.

// ErrPeerDeleted reports that the edge deleted the IKE SA or our only Child SA.
var ErrPeerDeleted = errors.New("peer deleted the SA")

// answerInformational answers the edge's INFORMATIONAL: a Delete of the
// IKE SA (answered empty) or of Child SAs (answered with ours of them); an
// empty one is its liveness check.
func (s *Session) answerInformational(ctx context.Context, sa *ikeSA, ps []message.Payload) []message.Payload {
	var resp []message.Payload
	for _, del := range message.FindAll[*message.Delete](ps) {
		switch del.Protocol {
		case message.ProtoIKE:
			if sa == s.ike {
				s.fatal = fmt.Errorf("%w: IKE SA deleted by the edge", ErrPeerDeleted)
			}
			sa.deleted = true
			return nil
		case message.ProtoESP:
			if ours := s.peerDeletedChildren(ctx, del.SPIs); len(ours) > 0 {
				resp = append(resp, &message.Delete{Protocol: message.ProtoESP, SPIs: ours})
				s.refreshStatus(ctx)
			}
		}
	}
	return resp
}

// peerDeletedChildren removes the Child SAs whose outbound SPIs the edge
// deleted and returns our inbound SPIs of them for the response.
func (s *Session) peerDeletedChildren(ctx context.Context, spis [][]byte) [][]byte {
	var ours [][]byte
	for _, b := range spis {
		if len(b) != 4 {
			continue
		}
		spi := binary.BigEndian.Uint32(b)
		i := slices.IndexFunc(s.children, func(c *childSA) bool { return c.spiOut == spi })
		if i < 0 {
			continue
		}
		c := s.children[i]
		s.children = slices.Delete(s.children, i, i+1)
		_ = s.opt.Installer.DelSA(ctx, c.in)
		_ = s.opt.Installer.DelSA(ctx, c.out)
		c.wipe()
		ours = append(ours, binary.BigEndian.AppendUint32(nil, c.spiIn))
	}
	if len(ours) > 0 && len(s.children) == 0 {
		s.fatal = fmt.Errorf("%w: last Child SA deleted by the edge", ErrPeerDeleted)
	}
	return ours
}

// deleteIKE tells the edge the IKE SA (and with it its Child SAs) is gone,
// with the normal retransmission schedule: on a lossy path a lost Delete
// leaves the replaced SA at the edge. ctx bounds it at shutdown.
func (s *Session) deleteIKE(ctx context.Context, sa *ikeSA) {
	if sa.deleted || sa.out == nil {
		return // the edge deleted it first (or it is wiped): nothing to tell
	}
	_, _, err := s.request(ctx, sa, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
	if err != nil {
		s.log.Warn("IKE SA delete not acknowledged; the edge may keep it until its own timeout",
			"spi_i", fmt.Sprintf("%016x", sa.spii), "spi_r", fmt.Sprintf("%016x", sa.spir), "err", err)
	}
}

// deleteChild tells the edge that Child SA c is gone (by our inbound
// SPI), on the current IKE SA.
func (s *Session) deleteChild(ctx context.Context, c *childSA) error {
	_, _, err := s.request(ctx, s.ike, message.INFORMATIONAL, []message.Payload{
		&message.Delete{Protocol: message.ProtoESP, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, c.spiIn)}},
	})
	return err
}

// checkLiveness checks liveness with an empty INFORMATIONAL request.
func (s *Session) checkLiveness(ctx context.Context) error {
	_, _, err := s.request(ctx, s.ike, message.INFORMATIONAL, nil)
	if err != nil {
		return fmt.Errorf("dead peer detection: %w", err)
	}
	return nil
}

// reportAuthFailure tells a responder we refused (its identity, chain or
// AUTH) that it must not keep the IKE SA and Child SA it has already set up
// for us: RFC 7296 2.21.2 lets the initiator send AUTHENTICATION_FAILED in
// a separate INFORMATIONAL exchange. One short attempt; we do not trust
// the responder, so its answer changes nothing.
func (s *Session) reportAuthFailure(ctx context.Context, sa *ikeSA) {
	_, _, err := s.requestTries(ctx, sa, message.INFORMATIONAL, []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}, 2)
	if err != nil {
		s.log.Debug("AUTHENTICATION_FAILED not acknowledged", "err", err)
	}
}
