package ike

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

// ErrPeerDeleted reports that the edge deleted the IKE SA or our only Child SA.
var ErrPeerDeleted = errors.New("peer deleted the SA")

// maxRequestDatagrams bounds the datagram hashes kept per request: the most
// fragments a message may have (sk's reassembly limit) and the whole one.
const maxRequestDatagrams = 129

// dispatch handles a packet that is not the response we wait for: requests
// from the edge are answered; everything else is dropped. ctx is the
// caller's (maintain's, or the exchange's it arrived during): it bounds the
// kernel work an answer needs, so a session being stopped does not wait on
// it.
func (s *Session) dispatch(ctx context.Context, p packet) {
	h, err := message.ParseHeader(p.b)
	if err != nil {
		s.drop(p, err)
		return
	}
	var sa *ikeSA
	for _, c := range []*ikeSA{s.ike, s.old, s.redundant} {
		if c != nil && h.SPIi == c.spii && h.SPIr == c.spir {
			sa = c
		}
	}
	// The edge's requests carry the I flag only on an IKE SA it created.
	if sa == nil || h.IsResponse() || h.IsInitiator() != sa.responder {
		s.drop(p, fmt.Errorf("not a request for a known SA (%v mid %d)", h.Exchange, h.MessageID))
		return
	}
	switch {
	case h.MessageID+1 == sa.peerMID && sa.lastResp != nil:
		// Anyone on the path can forge this header. Resend the cached
		// response only for a byte-exact repeat of the request we answered,
		// and once per repeat, not once per fragment of it.
		switch sum := sha256.Sum256(p.b); {
		case len(sa.lastReq) > 0 && sum == sa.lastReq[0]:
			_ = s.tr.send(sa.lastResp)
		case !slices.Contains(sa.lastReq, sum):
			s.drop(p, fmt.Errorf("mid %d is not a repeat of the request we answered", h.MessageID))
		}
		return
	case h.MessageID != sa.peerMID:
		s.drop(p, fmt.Errorf("request mid %d, expected %d", h.MessageID, sa.peerMID))
		return
	}
	d, first, err := s.openRequest(p, sa)
	if err != nil {
		s.drop(p, err)
		return
	}
	// Remember which datagrams made up this request; its fragment 1 (or
	// the whole message) is the one whose repeat gets the response again.
	// Bounded like the reassembly itself, whatever the edge sends.
	switch sum := sha256.Sum256(p.b); {
	case slices.Contains(sa.curReq, sum) || len(sa.curReq) > maxRequestDatagrams:
	case first:
		sa.curReq = append([][32]byte{sum}, sa.curReq...)
	default:
		sa.curReq = append(sa.curReq, sum)
	}
	if d == nil {
		return // more fragments to come
	}
	sa.lastReq, sa.curReq = sa.curReq, nil
	s.lastRecv = time.Now()
	resp := s.answer(ctx, sa, d)
	rh := message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: h.Exchange, Flags: sa.flags(true), MessageID: h.MessageID}
	sealed, err := sk.Seal(rh, resp, sa.out, s.fragmentLimit(sa))
	if err != nil {
		s.log.Error("cannot build response", "err", err)
		return
	}
	sa.peerMID++
	sa.lastResp = sealed.Datagrams
	_ = s.tr.send(sealed.Datagrams)
	s.log.Info("exchange", "type", h.Exchange.String(), "mid", h.MessageID, "peer_request", message.Summary(d.Payloads), "response", message.Summary(resp))
	switch {
	case !sa.deleted:
	case sa == s.old:
		s.old.wipe()
		s.old = nil // the edge deleted the IKE SA it rekeyed
	case sa == s.redundant:
		s.redundant.wipe()
		s.redundant = nil // the edge deleted the loser of a simultaneous rekey
	}
}

// answer builds our response to an authenticated request from the edge.
func (s *Session) answer(ctx context.Context, sa *ikeSA, d *sk.Decrypted) []message.Payload {
	switch d.Header.Exchange {
	case message.INFORMATIONAL:
		var resp []message.Payload
		for _, del := range message.FindAll[*message.Delete](d.Payloads) {
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
	case message.CREATE_CHILD_SA:
		return s.answerCreate(ctx, sa, d.Payloads)
	case message.IKE_FOLLOWUP_KE:
		return s.answerFollowupKE(ctx, sa, d.Payloads)
	}
	return []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}
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

// checkLiveness checks liveness with an empty INFORMATIONAL request.
func (s *Session) checkLiveness(ctx context.Context) error {
	_, _, err := s.request(ctx, s.ike, message.INFORMATIONAL, nil)
	if err != nil {
		return fmt.Errorf("dead peer detection: %w", err)
	}
	return nil
}
