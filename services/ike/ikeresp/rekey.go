package ikeresp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// Rekeys the responder starts itself, as an edge whose lifetimes are
// shorter than the branch's does: CREATE_CHILD_SA with KEi(0), then one
// IKE_FOLLOWUP_KE per negotiated additional key exchange (RFC 9370 2.2.4),
// then a Delete of the old SA (make before break: the new one is in place
// before the Delete goes out).

// own is a CREATE_CHILD_SA we started, waiting for responses.
type own struct {
	exch    message.ExchangeType // the exchange whose response we wait for
	mid     uint32
	ike     bool
	old     *child // Child SA rekey: the SA replaced
	spi     []byte // our SPI for the new SA (4 or 8 bytes)
	peerSPI []byte
	ni, nr  []byte
	ke      kex.Initiator
	pending []uint16 // additional key exchanges still to run
	shared  [][]byte
}

// ErrBusy reports a rekey requested while another is running or without
// an established SA.
var ErrBusy = errors.New("ikeresp: no idle IKE SA with a Child SA")

// RekeyChild starts a rekey of the newest Child SA of the IKE SA.
func (r *Responder) RekeyChild() error { return r.startRekey(false) }

// RekeyIKE starts a rekey of the IKE SA.
func (r *Responder) RekeyIKE() error { return r.startRekey(true) }

func (r *Responder) startRekey(ike bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s *sa
	for _, c := range r.sas {
		if len(c.children) > 0 && c.own == nil && c.pending == nil {
			s = c
		}
	}
	if s == nil {
		return ErrBusy
	}
	ke, err := kex.NewInitiator(s.ke, rand.Reader)
	if err != nil {
		return err
	}
	o := &own{exch: message.CREATE_CHILD_SA, ike: ike, ni: r.rekeyNonce(true), ke: ke, pending: slices.Clone(s.addke)}
	var ts []message.Transform
	var ps []message.Payload
	if ike {
		o.spi = binary.BigEndian.AppendUint64(nil, randSPI())
		ts = []message.Transform{{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: s.encrBits},
			{Type: message.TransformPRF, ID: s.prf.ID}, {Type: message.TransformKE, ID: s.ke}}
	} else {
		o.old = s.children[len(s.children)-1]
		o.spi = binary.BigEndian.AppendUint32(nil, randESPSPI())
		ts = []message.Transform{{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 256},
			{Type: message.TransformKE, ID: s.ke}}
		ps = append(ps, &message.Notify{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, o.old.spiIn), NotifyType: message.REKEY_SA})
	}
	for i, m := range s.addke {
		if r.cfg.Hostile.RekeyAddKENone {
			m = message.KE_NONE
		}
		ts = append(ts, message.Transform{Type: message.TransformADDKE1 + message.TransformType(i), ID: m})
	}
	proto := message.ProtoIKE
	if !ike {
		proto = message.ProtoESP
		ts = append(ts, message.Transform{Type: message.TransformESN, ID: message.ESN_NONE})
	}
	ps = append(ps, &message.SA{Proposals: []message.Proposal{{Num: 1, Protocol: proto, SPI: o.spi, Transforms: ts}}},
		&message.Nonce{Data: o.ni}, &message.KE{Group: s.ke, Data: ke.Public()})
	if !ike {
		// We initiate this exchange: our side (the branch's TSr) is TSi now.
		ps = append(ps, &message.TS{Responder: false, Selectors: s.tsr.Selectors},
			&message.TS{Responder: true, Selectors: s.tsi.Selectors})
	}
	o.mid = s.nextMID
	s.own = o
	r.request(s, message.CREATE_CHILD_SA, ps)
	return nil
}

// response handles the initiator's response to one of our requests.
func (r *Responder) response(s *sa, b []byte, h message.Header) {
	r.stats.ResponsesIn++
	o := s.own
	if o == nil || h.MessageID != o.mid || h.Exchange != o.exch || h.IsInitiator() == s.initiator {
		return // the answer to a Delete, or a retransmission
	}
	d := r.open(s, b, &s.respParts)
	if d == nil {
		return
	}
	if n := message.FirstError(d.Payloads); n != nil {
		r.stats.RekeysRefused++
		r.stats.LastRefusal = n.NotifyType
		s.own = nil
		return
	}
	if r.cfg.Hostile.CrashMidRekey {
		r.stats.Crashed++
		r.sas, r.inits = map[uint64]*sa{}, map[uint64]*sa{}
		return
	}
	if !r.ownStep(s, o, d.Payloads) {
		r.stats.RekeysFailed++
		s.own = nil
	}
}

// ownStep takes one response of our rekey and sends the next request, or
// completes the rekey. It reports false when the response is unusable.
func (r *Responder) ownStep(s *sa, o *own, ps []message.Payload) bool {
	ke := message.Find[*message.KE](ps)
	if o.exch == message.CREATE_CHILD_SA {
		saP, nonce := message.Find[*message.SA](ps), message.Find[*message.Nonce](ps)
		if saP == nil || nonce == nil || len(saP.Proposals) != 1 || len(saP.Proposals[0].SPI) != len(o.spi) {
			return false
		}
		o.peerSPI, o.nr = saP.Proposals[0].SPI, nonce.Data
		if ke == nil || ke.Group != s.ke {
			return false
		}
	} else if ke == nil || len(o.pending) == 0 || ke.Group != o.pending[0] {
		return false
	} else {
		o.pending = o.pending[1:]
	}
	shared, err := o.ke.Complete(ke.Data)
	if err != nil {
		return false
	}
	o.shared = append(o.shared, shared)
	if len(o.pending) > 0 {
		link := message.FindNotify(ps, message.ADDITIONAL_KEY_EXCHANGE)
		if link == nil {
			return false
		}
		if o.ke, err = kex.NewInitiator(o.pending[0], rand.Reader); err != nil {
			return false
		}
		o.exch, o.mid = message.IKE_FOLLOWUP_KE, s.nextMID
		r.stats.FollowupKEsSent++
		r.request(s, message.IKE_FOLLOWUP_KE, []message.Payload{
			&message.KE{Group: o.pending[0], Data: o.ke.Public()},
			&message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: bytes.Clone(link.Data)},
		})
		return true
	}
	s.own = nil
	r.completeOwn(s, o)
	return true
}

// completeOwn installs the new SA and deletes the old one.
func (r *Responder) completeOwn(s *sa, o *own) {
	if o.ike {
		ns := &sa{spii: binary.BigEndian.Uint64(o.spi), spir: binary.BigEndian.Uint64(o.peerSPI), initiator: true,
			prf: s.prf, encrBits: s.encrBits, ke: s.ke, addke: s.addke, ni: o.ni, nr: o.nr, peer: s.peer, natPort: s.natPort,
			frag: s.frag, children: s.children, nextAddKE: len(s.addke), tsi: s.tsi, tsr: s.tsr}
		seed := keys.SKEYSEEDRekey(s.prf, s.k.D, o.shared, o.ni, o.nr)
		ns.setKeys(keys.Derive(s.prf, seed, o.ni, o.nr, ns.spii, ns.spir, keys.Lengths{Enc: int(s.encrBits)/8 + 4}))
		r.sas[ns.ours()] = ns
		s.children = nil
		r.request(s, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
		delete(r.sas, s.ours())
		r.stats.OwnIKERekeys++
		return
	}
	// We initiated: initiator-to-responder keys (our outbound) come first.
	const n = 256/8 + 4
	km := keys.ChildKeymat(s.prf, s.k.D, o.shared, o.ni, o.nr, 2*n)
	c := &child{spiIn: binary.BigEndian.Uint32(o.spi), spiOut: binary.BigEndian.Uint32(o.peerSPI), keyOut: km[:n], keyIn: km[n:],
		rekeyOf: o.old, ours: true, ni: o.ni, nr: o.nr}
	s.children = append(s.children, c)
	r.stats.OwnChildRekeys++
	if !r.cfg.Hostile.KeepReplaced {
		r.settle(s, o.old)
	}
}

// settle decides, once a rekey of old is complete and no other rekey of it
// is running, which Child SAs we delete (RFC 7296 2.8.1): of two colliding
// rekeys the one with the lowest of the four nonces is deleted by its
// initiator, and the initiator of the survivor deletes old.
func (r *Responder) settle(s *sa, old *child) {
	if (s.own != nil && s.own.old == old) || (s.pending != nil && !s.pending.ike && s.pending.rekeyESP == old.spiOut) {
		return // the other rekey of old is still running; it settles
	}
	var ours, theirs *child
	for _, c := range s.children {
		if c.rekeyOf == old && c.ours {
			ours = c
		} else if c.rekeyOf == old {
			theirs = c
		}
	}
	if ours == nil {
		return // only the initiator rekeyed old: it deletes old
	}
	del := old
	if theirs != nil {
		r.stats.Collisions++
		if bytes.Compare(lowest(ours.ni, ours.nr), lowest(theirs.ni, theirs.nr)) <= 0 {
			del = ours // ours is redundant; the initiator deletes old
		} else {
			r.stats.CollisionsWon++ // the initiator deletes its redundant one
		}
	}
	if !slices.Contains(s.children, del) {
		return // deleted already
	}
	r.request(s, message.INFORMATIONAL, []message.Payload{
		&message.Delete{Protocol: message.ProtoESP, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, del.spiIn)}},
	})
	s.children = slices.DeleteFunc(s.children, func(x *child) bool { return x == del })
}

// lowest returns the lower nonce, octet by octet.
func lowest(a, b []byte) []byte {
	if bytes.Compare(a, b) < 0 {
		return a
	}
	return b
}
