package ike

import (
	"errors"
	"fmt"
	"slices"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// Only AEAD suites are offered (nothing weaker than AES-GCM-16 with
// HMAC-SHA2 PRFs), so there are never integrity transforms.
var (
	offeredENCR = []message.Transform{
		{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 256},
		{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 128},
	}
	offeredPRF = []uint16{message.PRF_HMAC_SHA2_384, message.PRF_HMAC_SHA2_256, message.PRF_HMAC_SHA2_512}
)

// ErrDowngrade reports a responder that did not select the required
// post-quantum key exchange.
var ErrDowngrade = errors.New("responder did not select the required ML-KEM key exchange")

// policy is what the configuration allows for key exchange.
type policy struct {
	ke             []uint16   // classical groups, preferred first: exactly what is offered
	addke          [][]uint16 // ADDKE1, ADDKE2, ... in order, each its alternatives, preferred first
	allowClassical bool
}

func newPolicy(c *Config) (policy, error) {
	p := policy{allowClassical: c.AllowClassical}
	for _, n := range c.KENames() {
		id, err := kex.ByName(n)
		if err != nil {
			return policy{}, err
		}
		p.ke = append(p.ke, id)
	}
	for _, alts := range c.AddKENames() {
		var slot []uint16
		for _, n := range alts {
			id, err := kex.ByName(n)
			if err != nil {
				return policy{}, err
			}
			slot = append(slot, id)
		}
		p.addke = append(p.addke, slot)
	}
	return p, nil
}

// suite is a negotiated set of algorithms for an IKE SA or a Child SA.
type suite struct {
	encrBits uint16
	prf      keys.PRF // IKE only
	ke       uint16   // 0 when none (a Child SA from IKE_AUTH)
	addke    []uint16 // the negotiated ADDKE methods, NONE dropped
}

func (s suite) encrName() string { return fmt.Sprintf("aes%dgcm16", s.encrBits) }

// encKeyLen is the AES key plus the 4-byte salt.
func (s suite) encKeyLen() int { return int(s.encrBits)/8 + 4 }

func (s suite) addkeNames() []string {
	out := []string{}
	for _, a := range s.addke {
		out = append(out, kex.Name(a))
	}
	return out
}

// addkeTransforms lists ADDKE1..n, each with its alternatives in order and
// NONE as a last resort only when classical-only is allowed.
func (p policy) addkeTransforms(slots [][]uint16) []message.Transform {
	var ts []message.Transform
	for i, alts := range slots {
		t := message.TransformADDKE1 + message.TransformType(i)
		for _, m := range alts {
			ts = append(ts, message.Transform{Type: t, ID: m})
		}
		if p.allowClassical {
			ts = append(ts, message.Transform{Type: t, ID: message.KE_NONE})
		}
	}
	return ts
}

// negotiated turns a negotiated ADDKE list into slots of one method each:
// a rekey offers exactly what is in use.
func negotiated(methods []uint16) [][]uint16 {
	var slots [][]uint16
	for _, m := range methods {
		slots = append(slots, []uint16{m})
	}
	return slots
}

// ikeProposals is the IKE_SA_INIT offer. One proposal carries the ADDKE
// transforms, so that a responder speaking ML-KEM cannot pick a classical
// alternative. Only when classical-only is allowed does a second proposal
// without them follow: a responder that predates RFC 9370 must refuse a
// proposal with transform types it does not know (RFC 7296 3.3.6), so
// NONE inside the first proposal does not reach it.
func (p policy) ikeProposals() []message.Proposal {
	ts := slices.Clone(offeredENCR)
	for _, id := range offeredPRF {
		ts = append(ts, message.Transform{Type: message.TransformPRF, ID: id})
	}
	for _, g := range p.ke {
		ts = append(ts, message.Transform{Type: message.TransformKE, ID: g})
	}
	props := []message.Proposal{{Num: 1, Protocol: message.ProtoIKE, Transforms: append(slices.Clone(ts), p.addkeTransforms(p.addke)...)}}
	if p.allowClassical && len(p.addke) > 0 {
		props = append(props, message.Proposal{Num: 2, Protocol: message.ProtoIKE, Transforms: ts})
	}
	return props
}

// selectProposal finds the offered proposal the responder's SA payload
// answers (by proposal number) and checks the answer against it.
func (p policy) selectProposal(sa *message.SA, offered []message.Proposal) (suite, []byte, error) {
	if sa == nil {
		return suite{}, nil, errors.New("response lacks an SA payload")
	}
	if len(sa.Proposals) != 1 {
		return suite{}, nil, fmt.Errorf("responder chose %d proposals", len(sa.Proposals))
	}
	i := slices.IndexFunc(offered, func(o message.Proposal) bool { return o.Num == sa.Proposals[0].Num })
	if i < 0 {
		return suite{}, nil, fmt.Errorf("responder chose proposal %d, which we did not offer", sa.Proposals[0].Num)
	}
	return p.selectSuite(sa, offered[i])
}

// rekeyProposal offers exactly the suite in use, with a fresh exchange of
// every negotiated method, for an IKE SA (spi 8 bytes) or Child SA (spi 4
// bytes) rekey. A classical IKE SA (allow_classical with a responder that
// knows no RFC 9370) offers no ADDKE: that responder would refuse it.
func (p policy) rekeyProposal(proto message.Protocol, spi []byte, s suite) message.Proposal {
	ts := []message.Transform{{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: s.encrBits}}
	if proto == message.ProtoIKE {
		ts = append(ts, message.Transform{Type: message.TransformPRF, ID: s.prf.ID})
	}
	ts = append(ts, message.Transform{Type: message.TransformKE, ID: s.ke})
	ts = append(ts, p.addkeTransforms(negotiated(s.addke))...)
	if proto == message.ProtoESP {
		ts = append(ts, message.Transform{Type: message.TransformESN, ID: message.ESN_NONE})
	}
	return message.Proposal{Num: 1, Protocol: proto, SPI: spi, Transforms: ts}
}

// espProposal is the Child SA offer in IKE_AUTH, which carries no KE.
func espProposal(spi []byte) message.Proposal {
	return message.Proposal{Num: 1, Protocol: message.ProtoESP, SPI: spi, Transforms: []message.Transform{
		{Type: message.TransformENCR, ID: message.ENCR_AES_GCM_16, KeyLength: 256},
		{Type: message.TransformESN, ID: message.ESN_NONE},
	}}
}

// selectSuite checks the responder's SA payload against what we offered:
// exactly one proposal, every transform one we offered for its type, one of
// each mandatory type. It enforces the downgrade rule for ADDKE.
func (p policy) selectSuite(sa *message.SA, offered message.Proposal) (suite, []byte, error) {
	if sa == nil {
		return suite{}, nil, errors.New("response lacks an SA payload")
	}
	if len(sa.Proposals) != 1 {
		return suite{}, nil, fmt.Errorf("responder chose %d proposals", len(sa.Proposals))
	}
	got := sa.Proposals[0]
	if got.Protocol != offered.Protocol {
		return suite{}, nil, fmt.Errorf("responder chose protocol %d, offered %d", got.Protocol, offered.Protocol)
	}
	wantSPI := map[message.Protocol]int{message.ProtoIKE: len(offered.SPI), message.ProtoESP: 4}[got.Protocol]
	if len(got.SPI) != wantSPI {
		return suite{}, nil, fmt.Errorf("responder SPI is %d bytes, want %d", len(got.SPI), wantSPI)
	}
	seen := map[message.TransformType]message.Transform{}
	for _, t := range got.Transforms {
		if _, dup := seen[t.Type]; dup {
			return suite{}, nil, fmt.Errorf("responder chose two transforms of type %d", t.Type)
		}
		if !slices.Contains(offered.Transforms, t) {
			return suite{}, nil, fmt.Errorf("responder chose transform type %d id %d (key %d) we did not offer", t.Type, t.ID, t.KeyLength)
		}
		seen[t.Type] = t
	}
	var s suite
	for typ := range offeredTypes(offered) {
		_, ok := seen[typ]
		isAddKE := typ >= message.TransformADDKE1 && typ <= message.TransformADDKE7
		switch {
		case !ok && isAddKE:
			// A responder that does not know RFC 9370 drops the type.
			if !p.allowClassical {
				return suite{}, nil, ErrDowngrade
			}
		case !ok:
			return suite{}, nil, fmt.Errorf("responder chose no transform of type %d", typ)
		}
	}
	s.encrBits = seen[message.TransformENCR].KeyLength
	if t, ok := seen[message.TransformPRF]; ok {
		prf, err := keys.PRFByID(t.ID)
		if err != nil {
			return suite{}, nil, err
		}
		s.prf = prf
	}
	s.ke = seen[message.TransformKE].ID
	for typ := message.TransformADDKE1; typ <= message.TransformADDKE7; typ++ {
		t, ok := seen[typ]
		if !ok || t.ID == message.KE_NONE {
			continue
		}
		s.addke = append(s.addke, t.ID)
	}
	offeredAddKE := 0
	for typ := range offeredTypes(offered) {
		if typ >= message.TransformADDKE1 && typ <= message.TransformADDKE7 {
			offeredAddKE++
		}
	}
	if len(s.addke) < offeredAddKE && !p.allowClassical {
		return suite{}, nil, ErrDowngrade
	}
	return s, got.SPI, nil
}

func offeredTypes(pr message.Proposal) map[message.TransformType]bool {
	m := map[message.TransformType]bool{}
	for _, t := range pr.Transforms {
		m[t.Type] = true
	}
	return m
}
