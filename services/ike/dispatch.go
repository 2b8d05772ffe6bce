package ike

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

// The edge's requests, whatever their exchange: dispatch checks what every
// one must pass (a known SA, the next Message ID, or a byte-exact repeat of
// the last request, answered from the cache), and answer hands it to its
// exchange's file: informational.go or createchild.go.

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
	for _, c := range []*ikeSA{s.ike, s.old, s.redundant, s.gone} {
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
			_ = s.tr.send(ctx, sa.lastResp)
		case !slices.Contains(sa.lastReq, sum):
			s.drop(p, fmt.Errorf("mid %d is not a repeat of the request we answered", h.MessageID))
		}
		return
	case h.MessageID != sa.peerMID:
		s.drop(p, fmt.Errorf("request mid %d, expected %d", h.MessageID, sa.peerMID))
		return
	case sa == s.gone:
		s.drop(p, fmt.Errorf("request mid %d on an IKE SA the edge deleted", h.MessageID))
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
	case slices.Contains(sa.curReq, sum) || len(sa.curReq) >= maxRequestDatagrams:
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
	_ = s.tr.send(ctx, sealed.Datagrams)
	s.log.Info("exchange", "type", h.Exchange.String(), "mid", h.MessageID, "peer_request", summary(d.Payloads), "response", summary(resp))
	switch {
	case !sa.deleted:
	case sa == s.old:
		s.old.wipe()
		s.old, s.gone = nil, sa // the edge deleted the IKE SA it rekeyed
	case sa == s.redundant:
		s.redundant.wipe()
		s.redundant, s.gone = nil, sa // the edge deleted the loser of a simultaneous rekey
	}
}

// answer builds our response to an authenticated request from the edge.
func (s *Session) answer(ctx context.Context, sa *ikeSA, d *sk.Decrypted) []message.Payload {
	switch d.Header.Exchange {
	case message.INFORMATIONAL:
		return s.answerInformational(ctx, sa, d.Payloads)
	case message.CREATE_CHILD_SA:
		return s.answerCreate(ctx, sa, d.Payloads)
	case message.IKE_FOLLOWUP_KE:
		return s.answerFollowupKE(ctx, sa, d.Payloads)
	}
	return []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}
}
