package ikeresp

import (
	"errors"

	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

// Tools for the initiator's hostile-peer tests: packets that come from the
// edge's own address and port, so the initiator's connected sockets accept
// them and its parsing, not the kernel, has to cope.

// ErrNoSA reports a call that needs one live IKE SA with a known peer.
var ErrNoSA = errors.New("ikeresp: no live IKE SA with a known peer")

// SAInfo is what an on-path attacker sees of the live IKE SA.
type SAInfo struct {
	SPIi, SPIr  uint64
	Initiator   bool     // we are its original initiator (we rekeyed it)
	NextMID     uint32   // our next request's Message ID
	PeerMID     uint32   // the initiator's next request's Message ID
	LastRequest [][]byte // our last request as sent, each datagram
}

// live returns the IKE SA that carries Child SAs (the newest one), or nil.
func (r *Responder) live() *sa {
	var best *sa
	for _, s := range r.sas {
		if s.peer.IsValid() && (best == nil || len(s.children) > len(best.children)) {
			best = s
		}
	}
	return best
}

// Current describes the live IKE SA.
func (r *Responder) Current() (SAInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.live()
	if s == nil {
		return SAInfo{}, ErrNoSA
	}
	return SAInfo{SPIi: s.spii, SPIr: s.spir, Initiator: s.initiator, NextMID: s.nextMID, PeerMID: s.peerMID,
		LastRequest: s.lastReq}, nil
}

// Ping sends an empty INFORMATIONAL request (a liveness check) on the live
// IKE SA. Its answer counts in Stats.ResponsesIn.
func (r *Responder) Ping() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.live()
	if s == nil {
		return ErrNoSA
	}
	r.request(s, message.INFORMATIONAL, nil)
	return nil
}

// Inject sends raw datagrams to the initiator of the live IKE SA from the
// socket (IKE or NAT-T port) that SA uses, with the non-ESP marker on the
// NAT-T port.
func (r *Responder) Inject(dgs ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.live()
	if s == nil {
		return ErrNoSA
	}
	for _, d := range dgs {
		if s.natPort {
			d = append([]byte{0, 0, 0, 0}, d...)
		}
		if err := r.write(s.peer, s.natPort, d); err != nil {
			return err
		}
	}
	return nil
}

// SealRequest builds, without sending, an authenticated request of ours on
// the live IKE SA with Message ID mid and the given inner payloads, split
// into fragments of at most maxLen bytes (0: one datagram). It does not
// advance our Message ID: it is for forging repeats and out-of-window IDs.
func (r *Responder) SealRequest(exch message.ExchangeType, mid uint32, ps []message.Payload, maxLen int) ([][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.live()
	if s == nil {
		return nil, ErrNoSA
	}
	h := message.Header{SPIi: s.spii, SPIr: s.spir, Exchange: exch, Flags: s.flags(false), MessageID: mid}
	sealed, err := sk.Seal(h, ps, s.out, maxLen)
	if err != nil {
		return nil, err
	}
	return sealed.Datagrams, nil
}

// SealFragments builds, without sending, an authenticated request of ours
// on the live IKE SA with Message ID mid, its inner payloads' plaintext split
// into parts fragments that all claim total, however many that is. Each
// fragment is genuine: only reassembly limits can stop them.
func (r *Responder) SealFragments(exch message.ExchangeType, mid uint32, ps []message.Payload, parts int, total uint16) ([][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.live()
	if s == nil {
		return nil, ErrNoSA
	}
	first, plain, err := message.MarshalPayloads(nil, ps)
	if err != nil {
		return nil, err
	}
	h := message.Header{SPIi: s.spii, SPIr: s.spir, Exchange: exch, Flags: s.flags(false), MessageID: mid}
	var dgs [][]byte
	chunk := (len(plain) + parts - 1) / parts
	for i := range parts {
		next := message.PayloadNone
		if i == 0 {
			next = first
		}
		part := plain[min(i*chunk, len(plain)):min((i+1)*chunk, len(plain))]
		dgs = append(dgs, sk.SealFragment(h, next, uint16(i+1), total, part, s.out))
	}
	return dgs, nil
}
