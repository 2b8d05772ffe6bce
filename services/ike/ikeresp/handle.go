package ikeresp

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sig"
	"github.com/pqbranch/pqbranch/services/ike/sk"
)

type sa struct {
	spii, spir uint64
	prf        keys.PRF
	encrBits   uint16
	ke         uint16
	addke      []uint16
	k          keys.IKE
	in, out    *sk.Cipher
	ni, nr     []byte
	req1       []byte
	resp1      []byte
	resp1Sent  [][]byte
	intI, intR []byte
	nextAddKE  int
	peerMID    uint32
	lastResp   [][]byte
	lastReq    [][]byte // our last request, as sent (for tests that repeat it)
	parts      sk.Reassembler
	nextMID    uint32
	peer       netip.AddrPort
	natPort    bool
	frag       bool
	children   []*child
	pending    *pending
	initiator  bool        // we created this IKE SA by rekeying (we are its original initiator)
	tsi, tsr   *message.TS // the initiator's selectors of the first Child SA
	own        *own        // our own CREATE_CHILD_SA in progress
	respParts  sk.Reassembler
}

// ours is our SPI of s, by which r.sas knows it.
func (s *sa) ours() uint64 {
	if s.initiator {
		return s.spii
	}
	return s.spir
}

// flags are the header flags of our messages on s.
func (s *sa) flags(response bool) message.Flags {
	var f message.Flags
	if s.initiator {
		f |= message.FlagInitiator
	}
	if response {
		f |= message.FlagResponse
	}
	return f
}

type child struct {
	spiIn, spiOut uint32
	keyIn, keyOut []byte
	// For a rekey collision (RFC 7296 2.8.1): the Child SA this one
	// replaces, whether we initiated its exchange, and its nonces.
	rekeyOf *child
	ours    bool
	ni, nr  []byte
}

// pending is a CREATE_CHILD_SA waiting for its IKE_FOLLOWUP_KE exchanges.
type pending struct {
	link     []byte
	methods  []uint16
	shared   [][]byte
	ni, nr   []byte
	ike      bool
	newSPIi  uint64
	newSPIr  uint64
	rekeyESP uint32 // old inbound SPI of the rekeyed child (ours)
	spiOut   uint32
	spiIn    uint32
}

func (s *sa) setKeys(k keys.IKE) {
	s.k = k
	in, out := k.Ei, k.Er
	if s.initiator {
		in, out = out, in
	}
	s.in, _ = sk.NewCipher(in)
	s.out, _ = sk.NewCipher(out)
}

// lookup finds the IKE SA a message belongs to.
func (r *Responder) lookup(h *message.Header) *sa {
	s := r.sas[h.SPIr]
	if s == nil || s.initiator {
		s = r.sas[h.SPIi]
		if s != nil && !s.initiator {
			s = nil
		}
	}
	if s == nil || s.spii != h.SPIi || s.spir != h.SPIr {
		return nil
	}
	return s
}

func (r *Responder) handle(b []byte, from netip.AddrPort, natPort bool) {
	h, err := message.ParseHeader(b)
	if err != nil {
		r.stats.Dropped++
		return
	}
	if h.Exchange == message.IKE_SA_INIT && !h.IsResponse() {
		r.init(b, from, natPort)
		return
	}
	s := r.lookup(&h)
	if s == nil || r.cfg.Hostile.Silent {
		r.stats.Dropped++
		return
	}
	if h.IsResponse() {
		r.response(s, b, h)
		return
	}
	if h.IsInitiator() == s.initiator {
		r.stats.Dropped++
		return
	}
	s.peer, s.natPort = from, natPort
	if h.MessageID+1 == s.peerMID && s.lastResp != nil {
		r.send(from, natPort, s.lastResp)
		return
	}
	if h.MessageID != s.peerMID {
		r.stats.Dropped++
		return
	}
	d := r.open(s, b, &s.parts)
	if d == nil {
		return
	}
	if h.Exchange == message.INFORMATIONAL && r.stats.DeletesLost < r.cfg.Hostile.LoseIKEDeletes &&
		slices.ContainsFunc(message.FindAll[*message.Delete](d.Payloads), func(x *message.Delete) bool { return x.Protocol == message.ProtoIKE }) {
		r.stats.DeletesLost++ // as if the path had lost it
		return
	}
	var resp []message.Payload
	var after func(*sk.Sealed)
	switch h.Exchange {
	case message.IKE_INTERMEDIATE:
		resp, after = r.intermediate(s, d)
	case message.IKE_AUTH:
		resp = r.auth(s, d)
		if resp == nil {
			return
		}
	case message.CREATE_CHILD_SA:
		resp, after = r.create(s, d)
	case message.IKE_FOLLOWUP_KE:
		resp, after = r.followup(s, d)
	case message.INFORMATIONAL:
		resp, after = r.informational(s, d)
	default:
		resp = []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}
	}
	rh := message.Header{SPIi: s.spii, SPIr: s.spir, Exchange: h.Exchange, Flags: s.flags(true), MessageID: h.MessageID}
	max := 0
	if s.frag {
		max = r.cfg.FragmentSize
	}
	sealed, err := sk.Seal(rh, resp, s.out, max)
	if err != nil {
		return
	}
	if len(sealed.Datagrams) > 1 {
		r.stats.FragmentsOut += len(sealed.Datagrams)
	}
	s.peerMID++
	s.lastResp = sealed.Datagrams
	if h.Exchange == message.IKE_AUTH && r.cfg.Hostile.UnauthNotify {
		fake := &message.Message{Header: rh, Payloads: []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}}
		raw, _ := fake.Marshal()
		r.send(from, natPort, [][]byte{raw})
	}
	r.send(from, natPort, sealed.Datagrams)
	if after != nil {
		after(sealed)
	}
}

// request sends a request of ours to the initiator (no retransmission).
func (r *Responder) request(s *sa, exch message.ExchangeType, ps []message.Payload) {
	h := message.Header{SPIi: s.spii, SPIr: s.spir, Exchange: exch, Flags: s.flags(false), MessageID: s.nextMID}
	s.nextMID++
	max := 0
	if s.frag {
		max = r.cfg.FragmentSize
	}
	sealed, err := sk.Seal(h, ps, s.out, max)
	if err == nil {
		s.lastReq = sealed.Datagrams
		r.send(s.peer, s.natPort, sealed.Datagrams)
	}
}

func (r *Responder) init(b []byte, from netip.AddrPort, natPort bool) {
	m, err := message.Parse(b)
	if err != nil || m.SPIr != 0 || m.MessageID != 0 {
		r.stats.Dropped++
		return
	}
	if old := r.inits[m.SPIi]; old != nil && bytes.Equal(old.req1, b) {
		r.send(from, natPort, old.resp1Sent)
		return
	}
	reply := func(ps ...message.Payload) {
		out := &message.Message{Header: message.Header{SPIi: m.SPIi, Exchange: message.IKE_SA_INIT, Flags: message.FlagResponse}, Payloads: ps}
		raw, _ := out.Marshal()
		r.send(from, natPort, [][]byte{raw})
	}
	if h := r.cfg.Hostile; h.ForgeCookies > 0 || h.ForgeInitError != 0 || h.ForgeInvalidKE != 0 {
		n := h.ForgeCookieLen
		if n == 0 {
			n = 16
		}
		for range h.ForgeCookies {
			reply(&message.Notify{NotifyType: message.COOKIE, Data: random(n)})
			r.stats.ForgedSent++
		}
		if h.ForgeInitError != 0 {
			reply(&message.Notify{NotifyType: h.ForgeInitError})
			r.stats.ForgedSent++
		}
		if h.ForgeInvalidKE != 0 {
			reply(&message.Notify{NotifyType: message.INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, h.ForgeInvalidKE)})
			r.stats.ForgedSent++
		}
	}
	if r.cfg.Hostile.NoInitAnswer {
		return
	}
	if r.cfg.Cookie {
		want := r.cookie(m.SPIi, from)
		n := message.FindNotify(m.Payloads, message.COOKIE)
		if n == nil || !hmac.Equal(n.Data, want) {
			r.stats.CookiesSent++
			reply(&message.Notify{NotifyType: message.COOKIE, Data: want})
			return
		}
	}
	saP := message.Find[*message.SA](m.Payloads)
	keP := message.Find[*message.KE](m.Payloads)
	nonce := message.Find[*message.Nonce](m.Payloads)
	if saP == nil || keP == nil || nonce == nil || len(saP.Proposals) == 0 {
		reply(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	var chosen message.Proposal
	ok := false
	for _, p := range saP.Proposals { // the initiator's order is its preference
		if chosen, ok = r.choose(p, message.ProtoIKE); ok {
			break
		}
	}
	if !ok {
		reply(&message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
		return
	}
	ke := transformID(chosen, message.TransformKE)
	if r.cfg.Hostile.InvalidKE != 0 && keP.Group != r.cfg.Hostile.InvalidKE {
		r.stats.InvalidKESent++
		reply(&message.Notify{NotifyType: message.INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, r.cfg.Hostile.InvalidKE)})
		return
	}
	if keP.Group != ke {
		r.stats.InvalidKESent++
		reply(&message.Notify{NotifyType: message.INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, ke)})
		return
	}
	pub, shared, err := kex.Respond(ke, keP.Data, rand.Reader)
	if err != nil {
		reply(&message.Notify{NotifyType: message.INVALID_SYNTAX})
		return
	}
	nonceLen := 32
	if r.cfg.Hostile.NonceLen != 0 {
		nonceLen = r.cfg.Hostile.NonceLen
	}
	s := &sa{spii: m.SPIi, spir: randSPI(), ni: nonce.Data, nr: random(nonceLen), ke: ke, req1: b, peer: from, natPort: natPort, peerMID: 1}
	s.prf, _ = keys.PRFByID(transformID(chosen, message.TransformPRF))
	for _, t := range chosen.Transforms {
		switch {
		case t.Type == message.TransformENCR:
			s.encrBits = t.KeyLength
		case t.Type >= message.TransformADDKE1 && t.Type <= message.TransformADDKE7 && t.ID != message.KE_NONE:
			s.addke = append(s.addke, t.ID)
		}
	}
	s.frag = message.FindNotify(m.Payloads, message.IKEV2_FRAGMENTATION_SUPPORTED) != nil
	respKE := uint16(ke)
	if r.cfg.Hostile.WrongKEGroup {
		respKE = message.KE_ECP256
	}
	srcAP := r.Addr()
	if r.cfg.FakeNAT {
		srcAP = netip.AddrPortFrom(srcAP.Addr(), srcAP.Port()+1)
	}
	answer := chosen
	if h := r.cfg.Hostile; h.AddKENone || h.DuplicateAddKE {
		answer.Transforms = nil
		for _, t := range chosen.Transforms {
			switch {
			case t.Type != message.TransformADDKE1:
			case h.AddKENone:
				t.ID = message.KE_NONE
			case h.DuplicateAddKE:
				answer.Transforms = append(answer.Transforms, t)
			}
			answer.Transforms = append(answer.Transforms, t)
		}
	}
	ps := []message.Payload{
		&message.SA{Proposals: []message.Proposal{answer}},
		&message.KE{Group: respKE, Data: pub},
		&message.Nonce{Data: s.nr},
		&message.Notify{NotifyType: message.NAT_DETECTION_SOURCE_IP, Data: message.NATDetectionHash(s.spii, s.spir, srcAP)},
		&message.Notify{NotifyType: message.NAT_DETECTION_DESTINATION_IP, Data: message.NATDetectionHash(s.spii, s.spir, from)},
		&message.Notify{NotifyType: message.IKEV2_FRAGMENTATION_SUPPORTED},
	}
	if len(s.addke) > 0 && !r.cfg.Hostile.NoIntermediate {
		ps = append(ps, &message.Notify{NotifyType: message.INTERMEDIATE_EXCHANGE_SUPPORTED})
	}
	out := &message.Message{Header: message.Header{SPIi: s.spii, SPIr: s.spir, Exchange: message.IKE_SA_INIT, Flags: message.FlagResponse}, Payloads: ps}
	s.resp1, _ = out.Marshal()
	s.resp1Sent = [][]byte{s.resp1}
	seed := keys.SKEYSEED(s.prf, s.ni, s.nr, shared)
	s.setKeys(keys.Derive(s.prf, seed, s.ni, s.nr, s.spii, s.spir, keys.Lengths{Enc: int(s.encrBits)/8 + 4}))
	r.sas[s.spir], r.inits[s.spii] = s, s
	r.stats.Inits++
	r.stats.LastKE, r.stats.LastAddKE = ke, slices.Clone(s.addke)
	r.send(from, natPort, s.resp1Sent)
}

// choose picks, per transform type, the first offered ID we support.
func (r *Responder) choose(p message.Proposal, proto message.Protocol) (message.Proposal, bool) {
	if p.Protocol != proto {
		return message.Proposal{}, false
	}
	out := message.Proposal{Num: p.Num, Protocol: proto}
	picked := map[message.TransformType]bool{}
	for _, t := range p.Transforms {
		if r.cfg.RejectUnknownTypes && r.cfg.AddKE == nil && t.Type >= message.TransformADDKE1 {
			return message.Proposal{}, false
		}
		if picked[t.Type] || !r.supports(t) {
			continue
		}
		picked[t.Type] = true
		out.Transforms = append(out.Transforms, t)
	}
	need := []message.TransformType{message.TransformENCR}
	if proto == message.ProtoIKE {
		need = append(need, message.TransformPRF, message.TransformKE)
	}
	for _, t := range need {
		if !picked[t] {
			return message.Proposal{}, false
		}
	}
	// An offered ADDKE type we know but cannot satisfy fails the proposal.
	if r.cfg.AddKE != nil {
		for _, t := range p.Transforms {
			if t.Type >= message.TransformADDKE1 && t.Type <= message.TransformADDKE7 && !picked[t.Type] {
				return message.Proposal{}, false
			}
		}
	}
	return out, true
}

func (r *Responder) supports(t message.Transform) bool {
	switch {
	case t.Type == message.TransformENCR:
		return t.ID == message.ENCR_AES_GCM_16 && (t.KeyLength == 256 || t.KeyLength == 128)
	case t.Type == message.TransformPRF:
		_, err := keys.PRFByID(t.ID)
		return err == nil
	case t.Type == message.TransformKE:
		return slices.Contains(r.cfg.KE, t.ID)
	case t.Type == message.TransformESN:
		return t.ID == message.ESN_NONE
	case t.Type >= message.TransformADDKE1 && t.Type <= message.TransformADDKE7:
		return r.cfg.AddKE != nil && (t.ID == message.KE_NONE || slices.Contains(r.cfg.AddKE, t.ID))
	}
	return false
}

func transformID(p message.Proposal, typ message.TransformType) uint16 {
	for _, t := range p.Transforms {
		if t.Type == typ {
			return t.ID
		}
	}
	return 0
}

func (r *Responder) kemAnswer(method uint16, peer []byte) ([]byte, []byte, error) {
	ct, shared, err := kex.Respond(method, peer, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if kex.IsPostQuantum(method) {
		switch {
		case r.cfg.Hostile.ShortCiphertext:
			ct = ct[:len(ct)-1]
		case r.cfg.Hostile.BadCiphertext:
			ct[0] ^= 0xff
		}
	}
	return ct, shared, nil
}

func (r *Responder) intermediate(s *sa, d *sk.Decrypted) ([]message.Payload, func(*sk.Sealed)) {
	r.stats.Intermediates++
	if s.nextAddKE >= len(s.addke) {
		return []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}, nil
	}
	method := s.addke[s.nextAddKE]
	ke := message.Find[*message.KE](d.Payloads)
	if ke == nil || ke.Group != method {
		return []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}, nil
	}
	ct, shared, err := r.kemAnswer(method, ke.Data)
	if err != nil {
		return []message.Payload{&message.Notify{NotifyType: message.INVALID_SYNTAX}}, nil
	}
	pi, pr := s.k.Pi, s.k.Pr
	s.intI = keys.IntAuth(s.prf, pi, s.intI, keys.IntAuthInput(d.Header, d.Inner, d.Plain))
	return []message.Payload{&message.KE{Group: method, Data: ct}}, func(sealed *sk.Sealed) {
		rh := d.Header
		rh.Flags = message.FlagResponse
		s.intR = keys.IntAuth(s.prf, pr, s.intR, keys.IntAuthInput(rh, sealed.Inner, sealed.Plain))
		seed := keys.SKEYSEEDNext(s.prf, s.k.D, shared, s.ni, s.nr)
		s.setKeys(keys.Derive(s.prf, seed, s.ni, s.nr, s.spii, s.spir, keys.Lengths{Enc: int(s.encrBits)/8 + 4}))
		s.nextAddKE++
	}
}

func (r *Responder) auth(s *sa, d *sk.Decrypted) []message.Payload {
	r.stats.Auths++
	if message.FindNotify(d.Payloads, message.INITIAL_CONTACT) != nil {
		r.stats.InitialContacts++
	}
	fail := []message.Payload{&message.Notify{NotifyType: message.AUTHENTICATION_FAILED}}
	if s.nextAddKE != len(s.addke) {
		return fail
	}
	var intAuth []byte
	if s.intI != nil {
		intAuth = keys.IntAuthSuffix(s.intI, s.intR, d.Header.MessageID)
	}
	idi := message.FindID(d.Payloads, false)
	authP := message.Find[*message.Auth](d.Payloads)
	if idi == nil || authP == nil || (r.cfg.PeerID != "" && string(idi.Data) != r.cfg.PeerID) {
		return fail
	}
	octetsI := keys.SignedOctets(s.prf, s.req1, s.nr, s.k.Pi, idi.Body(), intAuth)
	if r.cfg.Signer == nil {
		if !hmac.Equal(authP.Data, keys.PSKAuth(s.prf, r.cfg.PSK, octetsI)) {
			return fail
		}
	} else if err := r.verifyCert(d.Payloads, authP, octetsI); err != nil {
		return fail
	}
	idr := &message.ID{Responder: true, IDType: message.ID_FQDN, Data: []byte(r.cfg.ID)}
	octetsR := keys.SignedOctets(s.prf, s.resp1, s.ni, s.k.Pr, idr.Body(), intAuth)
	var ours *message.Auth
	psk := r.cfg.PSK
	if r.cfg.Hostile.WrongPSK != nil {
		psk = r.cfg.Hostile.WrongPSK
	}
	ps := []message.Payload{idr}
	if r.cfg.Signer != nil {
		for _, c := range r.cfg.Chain {
			ps = append(ps, &message.Cert{Encoding: message.CertX509Signature, Data: c})
		}
		var err error
		if ours, err = sig.Sign(r.cfg.Signer, octetsR); err != nil {
			return fail
		}
	} else {
		ours = &message.Auth{Method: message.AuthSharedKey, Data: keys.PSKAuth(s.prf, psk, octetsR)}
	}
	ps = append(ps, ours)
	c, saResp, ok := r.newChild(s, d.Payloads, nil, nil, s.ni, s.nr)
	if !ok {
		return append(ps, &message.Notify{NotifyType: message.NO_PROPOSAL_CHOSEN})
	}
	s.children = append(s.children, c)
	s.tsi, s.tsr = message.FindTS(d.Payloads, false), message.FindTS(d.Payloads, true)
	return append(ps, saResp, s.tsi, s.tsr)
}

func (r *Responder) verifyCert(ps []message.Payload, a *message.Auth, octets []byte) error {
	certs := message.FindAll[*message.Cert](ps)
	if len(certs) == 0 {
		return fmt.Errorf("no certificate")
	}
	leaf, err := x509.ParseCertificate(certs[0].Data)
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.cfg.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return err
	}
	if err := sig.Verify(leaf.PublicKey, a, octets); err != nil {
		return err
	}
	r.stats.PeerAuthScheme, _ = sig.SchemeOf(a)
	return nil
}

// newChild selects the ESP proposal and derives KEYMAT with shared (nil in
// IKE_AUTH). It returns the child and our SA payload.
func (r *Responder) newChild(s *sa, ps []message.Payload, shared [][]byte, chosen *message.Proposal, ni, nr []byte) (*child, *message.SA, bool) {
	var p message.Proposal
	if chosen != nil {
		p = *chosen
	} else {
		saP := message.Find[*message.SA](ps)
		if saP == nil {
			return nil, nil, false
		}
		var ok bool
		if p, ok = r.choose(saP.Proposals[0], message.ProtoESP); !ok {
			return nil, nil, false
		}
		p.SPI = saP.Proposals[0].SPI
	}
	if len(p.SPI) != 4 {
		return nil, nil, false
	}
	c := &child{spiOut: binary.BigEndian.Uint32(p.SPI), spiIn: randESPSPI()}
	var bits uint16
	for _, t := range p.Transforms {
		if t.Type == message.TransformENCR {
			bits = t.KeyLength
		}
	}
	n := int(bits)/8 + 4
	km := keys.ChildKeymat(s.prf, s.k.D, shared, ni, nr, 2*n)
	c.keyOut, c.keyIn = km[n:2*n], km[:n] // initiator-to-responder first: that is our inbound
	p.SPI = binary.BigEndian.AppendUint32(nil, c.spiIn)
	return c, &message.SA{Proposals: []message.Proposal{p}}, true
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randSPI() uint64 {
	for {
		if v := binary.BigEndian.Uint64(random(8)); v != 0 {
			return v
		}
	}
}

func randESPSPI() uint32 {
	for {
		if v := binary.BigEndian.Uint32(random(4)); v >= 256 {
			return v
		}
	}
}

// open decrypts a protected message and, for a fragment, adds it to parts.
// It returns nil for a packet to drop or a message still incomplete.
func (r *Responder) open(s *sa, b []byte, parts *sk.Reassembler) *sk.Decrypted {
	m, err := message.Parse(b)
	if err != nil {
		r.stats.Dropped++
		return nil
	}
	d, frag, err := sk.Open(b, m, s.in)
	if err != nil {
		r.stats.Dropped++
		return nil
	}
	if frag != nil {
		r.stats.FragmentsIn++
		if d, err = parts.Add(d, frag); err != nil {
			return nil
		}
	}
	return d
}
