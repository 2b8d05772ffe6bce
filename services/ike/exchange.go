package ike

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

// ErrPeerLost reports a request that was never answered.
var ErrPeerLost = errors.New("peer did not answer")

// verdict is what a roundTrip's match makes of a received packet.
type verdict uint8

const (
	notOurs     verdict = iota // not the answer: dispatch it
	accepted                   // the answer: the round trip is done
	provisional                // an unauthenticated answer that may be forged: wait a little for a better one
	consumed                   // dealt with (dropped) by match: keep waiting
)

// roundTrip sends dgs and retransmits them with exponential backoff until
// match accepts a received packet. Packets that match does not take are
// dispatched (peer requests are answered, garbage dropped) meanwhile.
//
// A provisional answer (an unprotected error or COOKIE in IKE_SA_INIT) ends
// the round trip only if nothing accepted arrives within settle of it: RFC
// 7296 2.21.1 lets the initiator wait for a valid answer, so a forged error
// racing the real response does not win. match remembers what it saw.
func (s *Session) roundTrip(ctx context.Context, what string, dgs [][]byte, tries int, match func(packet) verdict) error {
	timeout := s.opt.RetransmitBase
	var settleAt time.Time // set by the first provisional answer
	for try := 0; try < tries; try++ {
		if try > 0 {
			s.update(func(st *Status) { st.Retransmits++ })
			s.log.Debug("retransmit", "request", what, "try", try+1)
		}
		if err := s.tr.send(ctx, dgs); err != nil {
			s.log.Debug("send failed", "request", what, "err", err)
		}
		retransmitAt := time.Now().Add(timeout)
		for {
			deadline := retransmitAt
			if !settleAt.IsZero() {
				// Settle instead of retransmitting: a repeat would only
				// draw another answer of the same kind.
				deadline = settleAt
			}
			p, ok, err := s.tr.receive(ctx, deadline)
			if err != nil {
				return err
			}
			if !ok {
				if !settleAt.IsZero() {
					return nil // only provisional answers came; the caller acts on them
				}
				break // retransmit
			}
			switch match(p) {
			case accepted:
				s.lastRecv = time.Now()
				return nil
			case provisional:
				if settleAt.IsZero() {
					settleAt = time.Now().Add(s.settleTime())
				}
				continue
			case consumed:
				continue
			}
			s.dispatch(ctx, p)
			if s.fatal != nil {
				return s.fatal
			}
		}
		timeout = min(2*timeout, s.opt.RetransmitMax)
	}
	return fmt.Errorf("%s: %w after %d tries", what, ErrPeerLost, tries)
}

// settleTime is how long a provisional answer waits for a valid one: about
// one round trip's retransmission timeout, at most a second.
func (s *Session) settleTime() time.Duration { return min(s.opt.RetransmitBase, time.Second) }

// fragmentLimit is the largest IKE message we send unfragmented on sa.
func (s *Session) fragmentLimit(sa *ikeSA) int {
	if !sa.fragments {
		return 0
	}
	return s.cfg.Fragment() - s.tr.overhead()
}

// request runs one protected exchange on sa and returns the response.
func (s *Session) request(ctx context.Context, sa *ikeSA, exch message.ExchangeType, payloads []message.Payload) (*sk.Decrypted, *sk.Sealed, error) {
	return s.requestTries(ctx, sa, exch, payloads, s.opt.RetransmitTries)
}

func (s *Session) requestTries(ctx context.Context, sa *ikeSA, exch message.ExchangeType, payloads []message.Payload, tries int) (*sk.Decrypted, *sk.Sealed, error) {
	start := time.Now()
	mid := sa.nextMID
	h := message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, Flags: sa.flags(false), MessageID: mid}
	sealed, err := sk.Seal(h, payloads, sa.out, s.fragmentLimit(sa))
	if err != nil {
		return nil, nil, fmt.Errorf("%v: %w", exch, err)
	}
	sa.nextMID++
	var resp *sk.Decrypted
	err = s.roundTrip(ctx, exch.String(), sealed.Datagrams, tries, func(p packet) verdict {
		if d := s.openResponse(p, sa, exch, mid); d != nil {
			resp = d
			return accepted
		}
		return notOurs
	})
	if err != nil {
		return nil, nil, err
	}
	s.update(func(st *Status) { st.Exchanges++ })
	s.log.Info("exchange", "type", exch.String(), "mid", mid, "request", summary(payloads),
		"response", summary(resp.Payloads), "fragments", len(sealed.Datagrams), "rtt", time.Since(start).Round(time.Microsecond))
	return resp, sealed, nil
}

// openResponse returns the decrypted response to request mid on sa, or nil
// when p is something else (or an incomplete set of fragments).
func (s *Session) openResponse(p packet, sa *ikeSA, exch message.ExchangeType, mid uint32) *sk.Decrypted {
	h, err := message.ParseHeader(p.b)
	if err != nil || h.SPIi != sa.spii || h.SPIr != sa.spir || !h.IsResponse() || h.IsInitiator() != sa.responder ||
		h.MessageID != mid || h.Exchange != exch {
		return nil
	}
	d, err := s.open(p, sa, &sa.respParts)
	if err != nil {
		s.drop(p, err)
		return nil
	}
	return d
}

// openRequest opens a request of the edge on sa. first reports whether p
// was the whole message or its fragment 1.
func (s *Session) openRequest(p packet, sa *ikeSA) (d *sk.Decrypted, first bool, err error) {
	m, err := message.Parse(p.b)
	if err != nil {
		return nil, false, err
	}
	d, frag, err := sk.Open(p.b, m, sa.in)
	if err != nil {
		return nil, false, err
	}
	if frag == nil {
		return d, true, nil
	}
	if frag.Number == 1 {
		first = true
	}
	d, err = sa.reqParts.Add(d, frag)
	return d, first, err
}

// open decrypts and, for fragments, reassembles a message on sa.
func (s *Session) open(p packet, sa *ikeSA, parts *sk.Reassembler) (*sk.Decrypted, error) {
	m, err := message.Parse(p.b)
	if err != nil {
		return nil, err
	}
	d, frag, err := sk.Open(p.b, m, sa.in)
	if err != nil {
		return nil, err
	}
	if frag == nil {
		return d, nil
	}
	return parts.Add(d, frag)
}

// summary is a message's payloads in a log record, as message.Summary
// writes them; it is only written out if the record is: the exchange
// lines are at Info, which a quiet logger drops.
type summary []message.Payload

func (p summary) LogValue() slog.Value { return slog.StringValue(message.Summary(p)) }

func (s *Session) drop(p packet, err error) {
	s.update(func(st *Status) { st.Dropped++ })
	s.log.Debug("dropped packet", "from", p.from, "len", len(p.b), "err", err)
}
