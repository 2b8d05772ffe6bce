package ikeresp

import (
	"encoding/binary"
	"slices"

	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

func errResp(t message.NotifyType) []message.Payload {
	return []message.Payload{&message.Notify{NotifyType: t}}
}

// create answers CREATE_CHILD_SA for a Child SA rekey or an IKE SA rekey.
func (r *Responder) create(s *sa, d *sk.Decrypted) ([]message.Payload, func(*sk.Sealed)) {
	saP := message.Find[*message.SA](d.Payloads)
	keP := message.Find[*message.KE](d.Payloads)
	nonce := message.Find[*message.Nonce](d.Payloads)
	if saP == nil || keP == nil || nonce == nil {
		return errResp(message.INVALID_SYNTAX), nil
	}
	offered := saP.Proposals[0]
	switch h := r.cfg.Hostile; {
	case offered.Protocol == message.ProtoESP && h.RefuseChildRekeys != 0:
		r.stats.RefusedChild++
		return errResp(h.RefuseChildRekeys), nil
	case offered.Protocol == message.ProtoIKE && h.RefuseIKERekeys != 0:
		r.stats.RefusedIKE++
		return errResp(h.RefuseIKERekeys), nil
	}
	chosen, ok := r.choose(offered, offered.Protocol)
	if !ok || transformID(chosen, message.TransformKE) != keP.Group {
		return errResp(message.NO_PROPOSAL_CHOSEN), nil
	}
	pub, shared, err := r.kemAnswer(keP.Group, keP.Data)
	if err != nil {
		return errResp(message.INVALID_SYNTAX), nil
	}
	p := &pending{ni: nonce.Data, nr: r.rekeyNonce(false), shared: [][]byte{shared}, link: random(8)}
	for _, t := range chosen.Transforms {
		if t.Type >= message.TransformADDKE1 && t.Type <= message.TransformADDKE7 && t.ID != message.KE_NONE {
			p.methods = append(p.methods, t.ID)
		}
	}
	resp := []message.Payload{nil, &message.Nonce{Data: p.nr}, &message.KE{Group: keP.Group, Data: pub}}
	switch offered.Protocol {
	case message.ProtoIKE:
		if len(offered.SPI) != 8 {
			return errResp(message.INVALID_SYNTAX), nil
		}
		p.ike, p.newSPIi, p.newSPIr = true, binary.BigEndian.Uint64(offered.SPI), randSPI()
		chosen.SPI = binary.BigEndian.AppendUint64(nil, p.newSPIr)
	case message.ProtoESP:
		rekey := message.FindNotify(d.Payloads, message.REKEY_SA)
		if rekey == nil || len(rekey.SPI) != 4 || len(offered.SPI) != 4 {
			return errResp(message.NO_ADDITIONAL_SAS), nil
		}
		p.rekeyESP = binary.BigEndian.Uint32(rekey.SPI) // the initiator's inbound = our outbound
		p.spiOut, p.spiIn = binary.BigEndian.Uint32(offered.SPI), randESPSPI()
		chosen.SPI = binary.BigEndian.AppendUint32(nil, p.spiIn)
		resp = append(resp, message.FindTS(d.Payloads, false), message.FindTS(d.Payloads, true))
	default:
		return errResp(message.NO_PROPOSAL_CHOSEN), nil
	}
	resp[0] = &message.SA{Proposals: []message.Proposal{chosen}}
	if len(p.methods) > 0 {
		resp = append(resp, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: p.link})
	}
	return resp, func(*sk.Sealed) {
		s.pending = p
		if len(p.methods) == 0 {
			r.finish(s)
		}
	}
}

func (r *Responder) followup(s *sa, d *sk.Decrypted) ([]message.Payload, func(*sk.Sealed)) {
	r.stats.FollowupKEs++
	p := s.pending
	link := message.FindNotify(d.Payloads, message.ADDITIONAL_KEY_EXCHANGE)
	if p == nil || link == nil || string(link.Data) != string(p.link) {
		return errResp(message.STATE_NOT_FOUND), nil
	}
	idx := len(p.shared) - 1
	keP := message.Find[*message.KE](d.Payloads)
	if idx >= len(p.methods) || keP == nil || keP.Group != p.methods[idx] {
		return errResp(message.INVALID_SYNTAX), nil
	}
	ct, shared, err := r.kemAnswer(keP.Group, keP.Data)
	if err != nil {
		return errResp(message.INVALID_SYNTAX), nil
	}
	p.shared = append(p.shared, shared)
	resp := []message.Payload{&message.KE{Group: keP.Group, Data: ct}}
	if len(p.shared)-1 < len(p.methods) {
		p.link = random(8)
		resp = append(resp, &message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: p.link})
		return resp, nil
	}
	return resp, func(*sk.Sealed) { r.finish(s) }
}

// finish completes a rekey once every key exchange is done.
func (r *Responder) finish(s *sa) {
	p := s.pending
	s.pending = nil
	if p.ike {
		seed := keys.SKEYSEEDRekey(s.prf, s.k.D, p.shared, p.ni, p.nr)
		ns := &sa{spii: p.newSPIi, spir: p.newSPIr, prf: s.prf, encrBits: s.encrBits, ke: s.ke, addke: s.addke,
			ni: p.ni, nr: p.nr, peer: s.peer, natPort: s.natPort, frag: s.frag, children: s.children, nextAddKE: len(s.addke),
			tsi: s.tsi, tsr: s.tsr}
		ns.setKeys(keys.Derive(s.prf, seed, p.ni, p.nr, ns.spii, ns.spir, keys.Lengths{Enc: int(s.encrBits)/8 + 4}))
		s.children = nil
		r.sas[ns.spir] = ns
		r.stats.IKERekeys++
		return
	}
	prop := message.Proposal{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, p.spiOut),
		Transforms: []message.Transform{{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 256}}}
	c, _, _ := r.newChild(s, nil, p.shared, &prop, p.ni, p.nr)
	c.spiIn, c.ni, c.nr = p.spiIn, p.ni, p.nr
	if i := slices.IndexFunc(s.children, func(x *child) bool { return x.spiOut == p.rekeyESP }); i >= 0 {
		c.rekeyOf = s.children[i]
	}
	s.children = append(s.children, c)
	r.stats.ChildRekeys++
	if c.rekeyOf != nil {
		r.settle(s, c.rekeyOf)
	}
}

func (r *Responder) informational(s *sa, d *sk.Decrypted) ([]message.Payload, func(*sk.Sealed)) {
	r.stats.Informationals++
	if message.FindNotify(d.Payloads, message.AUTHENTICATION_FAILED) != nil {
		// The initiator refused us (RFC 7296 2.21.2): like strongSwan,
		// treat it as the IKE SA's deletion.
		r.stats.AuthFailedIn++
		return nil, func(*sk.Sealed) { delete(r.sas, s.ours()) }
	}
	var resp []message.Payload
	for _, del := range message.FindAll[*message.Delete](d.Payloads) {
		switch del.Protocol {
		case message.ProtoIKE:
			r.stats.DeletesIKE++
			return nil, func(*sk.Sealed) { delete(r.sas, s.ours()) }
		case message.ProtoESP:
			var ours [][]byte
			for _, spi := range del.SPIs {
				if len(spi) != 4 {
					continue
				}
				out := binary.BigEndian.Uint32(spi)
				i := slices.IndexFunc(s.children, func(c *child) bool { return c.spiOut == out })
				if i >= 0 {
					ours = append(ours, binary.BigEndian.AppendUint32(nil, s.children[i].spiIn))
					s.children = slices.Delete(s.children, i, i+1)
					r.stats.DeletesESP++
				}
			}
			if len(ours) > 0 {
				resp = append(resp, &message.Delete{Protocol: message.ProtoESP, SPIs: ours})
			}
		}
	}
	return resp, nil
}
