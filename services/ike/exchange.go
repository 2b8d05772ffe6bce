package ike

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

// ErrPeerLost reports a request that was never answered.
var ErrPeerLost = errors.New("peer did not answer")

// roundTrip sends dgs and retransmits them with exponential backoff until
// match accepts a received packet. Packets that match does not take are
// dispatched (peer requests are answered, garbage dropped) meanwhile.
func (s *Session) roundTrip(ctx context.Context, what string, dgs [][]byte, tries int, match func(packet) bool) error {
	timeout := s.opt.RetransmitBase
	for try := 0; try < tries; try++ {
		if try > 0 {
			s.update(func(st *Status) { st.Retransmits++ })
			s.log.Debug("retransmit", "request", what, "try", try+1)
		}
		if err := s.tr.send(dgs); err != nil {
			s.log.Debug("send failed", "request", what, "err", err)
		}
		timer := time.NewTimer(timeout)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
				waiting = false
			case p := <-s.tr.in:
				s.tr.recvd++
				s.tr.bytesRecvd += uint64(len(p.b))
				if match(p) {
					timer.Stop()
					s.lastRecv = time.Now()
					return nil
				}
				s.dispatch(p)
				if s.fatal != nil {
					timer.Stop()
					return s.fatal
				}
			}
		}
		timeout = min(2*timeout, s.opt.RetransmitMax)
	}
	return fmt.Errorf("%s: %w after %d tries", what, ErrPeerLost, tries)
}

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
	err = s.roundTrip(ctx, exch.String(), sealed.Datagrams, tries, func(p packet) bool {
		d := s.openResponse(p, sa, exch, mid)
		if d != nil {
			resp = d
		}
		return d != nil
	})
	if err != nil {
		return nil, nil, err
	}
	s.update(func(st *Status) { st.Exchanges++ })
	s.log.Info("exchange", "type", exch.String(), "mid", mid, "request", message.Summary(payloads),
		"response", message.Summary(resp.Payloads), "fragments", len(sealed.Datagrams), "rtt", time.Since(start).Round(time.Microsecond))
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

func (s *Session) drop(p packet, err error) {
	s.update(func(st *Status) { st.Dropped++ })
	s.log.Debug("dropped packet", "from", p.from, "len", len(p.b), "err", err)
}
