package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// IKE_SA_INIT (RFC 7296 1.2, 2.6, 2.10, 2.23): the unprotected first
// exchange, with the COOKIE and INVALID_KE_PAYLOAD round trips, forged
// answers held off, and NAT detection. We only ever initiate it.

const (
	maxCookies   = 3
	maxKERetries = 2
	nonceLen     = 32
)

// initExchange runs IKE_SA_INIT, following COOKIE and INVALID_KE_PAYLOAD.
func (s *Session) initExchange(ctx context.Context) (*handshake, error) {
	sa := &ikeSA{spii: s.newIKESPI(), ni: s.random(nonceLen)}
	group := s.pol.ke[0]
	if slices.Contains(s.pol.ke, s.keHint) {
		group = s.keHint // what the edge asked for last time
	}
	var cookie []byte
	cookies, keRetries := 0, 0
	proposals := s.pol.ikeProposals()
	for {
		ke, err := kex.NewInitiator(group, s.opt.Rand)
		if err != nil {
			return nil, err
		}
		req := &message.Message{Header: message.Header{SPIi: sa.spii, Exchange: message.IKE_SA_INIT, Flags: message.FlagInitiator}}
		if cookie != nil {
			req.Payloads = append(req.Payloads, &message.Notify{NotifyType: message.COOKIE, Data: cookie})
		}
		req.Payloads = append(req.Payloads,
			&message.SA{Proposals: proposals},
			&message.KE{Group: group, Data: ke.Public()},
			&message.Nonce{Data: sa.ni},
			s.natNotify(message.NAT_DETECTION_SOURCE_IP, sa.spii, 0, s.tr.localAddr()),
			s.natNotify(message.NAT_DETECTION_DESTINATION_IP, sa.spii, 0, s.tr.remoteAddr()),
			&message.Notify{NotifyType: message.IKEV2_FRAGMENTATION_SUPPORTED},
			&message.Notify{NotifyType: message.SIGNATURE_HASH_ALGORITHMS, Data: []byte{0, 2, 0, 3, 0, 4, 0, 5}},
		)
		if len(s.pol.addke) > 0 {
			req.Payloads = append(req.Payloads, &message.Notify{NotifyType: message.INTERMEDIATE_EXCHANGE_SUPPORTED})
		}
		raw, err := req.Marshal()
		if err != nil {
			return nil, err
		}
		start := time.Now()
		// Unprotected answers: anyone on the path can send them. A full
		// answer (SA, KE, Nr, no error) is taken at once; an error, a
		// COOKIE or an INVALID_KE_PAYLOAD only if no full answer follows
		// within the settle time, and then the first of each kind.
		var full, cookieResp, keResp, errResp *message.Message
		var fullRaw []byte
		err = s.roundTrip(ctx, "IKE_SA_INIT", [][]byte{raw}, s.opt.RetransmitTries, func(p packet) verdict {
			m, err := message.Parse(p.b)
			if err != nil || m.SPIi != sa.spii || m.Exchange != message.IKE_SA_INIT || !m.IsResponse() || m.IsInitiator() || m.MessageID != 0 {
				return notOurs
			}
			first := func(have **message.Message) verdict {
				if *have == nil {
					*have = m
				} else {
					s.drop(p, errors.New("another unprotected IKE_SA_INIT answer"))
				}
				return provisional
			}
			switch {
			case message.FindNotify(m.Payloads, message.COOKIE) != nil:
				return first(&cookieResp)
			case message.FindNotify(m.Payloads, message.INVALID_KE_PAYLOAD) != nil:
				n := message.FindNotify(m.Payloads, message.INVALID_KE_PAYLOAD)
				// Only a group we offer, other than the one we sent, may steer us.
				if g, ok := invalidKEGroup(n); !ok || g == group || !slices.Contains(s.pol.ke, g) {
					s.drop(p, fmt.Errorf("INVALID_KE_PAYLOAD for group %d we did not offer", g))
					return consumed
				}
				return first(&keResp)
			case message.FirstError(m.Payloads) != nil:
				return first(&errResp)
			case message.Find[*message.SA](m.Payloads) == nil || message.Find[*message.KE](m.Payloads) == nil ||
				message.Find[*message.Nonce](m.Payloads) == nil:
				s.drop(p, errors.New("IKE_SA_INIT answer without SA, KE and nonce"))
				return consumed
			}
			full, fullRaw = m, p.b
			return accepted
		})
		if err != nil {
			return nil, err // roundTrip's error names IKE_SA_INIT
		}
		resp := full
		for _, m := range []*message.Message{cookieResp, keResp, errResp} {
			if resp == nil {
				resp = m
			}
		}
		if resp == nil {
			// Only junk that looked like answers came back.
			return nil, fmt.Errorf("IKE_SA_INIT: %w: no usable answer after %d tries", ErrPeerLost, s.opt.RetransmitTries)
		}
		s.log.Info("exchange", "type", "IKE_SA_INIT", "mid", 0, "request", summary(req.Payloads),
			"response", summary(resp.Payloads), "rtt", time.Since(start).Round(time.Microsecond))
		s.update(func(st *Status) { st.Exchanges++ })
		if resp == cookieResp {
			n := message.FindNotify(resp.Payloads, message.COOKIE)
			// RFC 7296 2.6: a cookie is 1 to 64 bytes.
			if cookies++; cookies > maxCookies || len(n.Data) == 0 || len(n.Data) > 64 {
				return nil, fmt.Errorf("IKE_SA_INIT: responder keeps demanding cookies (%d, the last of %d bytes)", cookies, len(n.Data))
			}
			cookie = n.Data
			continue
		}
		if resp == keResp {
			if keRetries++; keRetries > maxKERetries {
				return nil, fmt.Errorf("IKE_SA_INIT: responder keeps rejecting our KE group (last asked for %s)", kex.Name(group))
			}
			group, _ = invalidKEGroup(message.FindNotify(resp.Payloads, message.INVALID_KE_PAYLOAD))
			s.keHint = group // remembered for the next attempt, if this one gets through
			s.log.Info("responder wants another key exchange group", "group", kex.Name(group))
			continue
		}
		if resp == errResp {
			return nil, s.initRefused(message.FirstError(resp.Payloads).NotifyType, proposals, resp.Payloads)
		}
		respRaw := fullRaw
		hs := &handshake{sa: sa, request1: raw, response: respRaw}
		if err := s.completeInit(hs, resp, proposals, ke); err != nil {
			return nil, fmt.Errorf("IKE_SA_INIT: %w", err)
		}
		return hs, nil
	}
}

// initRefused explains a refused IKE_SA_INIT by what we offered and what
// the responder answered, without guessing its cause: NO_PROPOSAL_CHOSEN
// comes from a responder lacking ML-KEM or RFC 9370 as much as from one
// lacking just the parameter set or cipher we offer.
func (s *Session) initRefused(n message.NotifyType, offered []message.Proposal, answer []message.Payload) error {
	refused := &ErrRefused{Exchange: message.IKE_SA_INIT, Notify: n}
	var props []string
	for _, p := range offered {
		props = append(props, describeProposal(p))
	}
	msg := fmt.Sprintf("%v: we offered %s; it answered %s", refused, strings.Join(props, " or "), message.Summary(answer))
	if n == message.NO_PROPOSAL_CHOSEN && len(s.pol.addke) > 0 && !s.pol.allowClassical {
		msg += "; every proposal required the additional key exchanges (tunnel.allow_classical would add a classical-only one)"
	}
	return &refusedError{ErrRefused: refused, msg: msg}
}

// refusedError is an ErrRefused with the context of what was offered.
type refusedError struct {
	*ErrRefused
	msg string
}

func (e *refusedError) Error() string { return e.msg }

func (e *refusedError) Unwrap() error { return e.ErrRefused }

// describeProposal names a proposal's transforms by type, alternatives
// joined with "|", e.g. "ENCR aes256gcm16|aes128gcm16, PRF ..., KE x25519|ecp256, ADDKE1 mlkem768".
func describeProposal(p message.Proposal) string {
	var parts []string
	var lastType message.TransformType
	for _, t := range p.Transforms {
		name := transformName(t)
		if len(parts) > 0 && t.Type == lastType {
			parts[len(parts)-1] += "|" + name
			continue
		}
		parts = append(parts, transformTypeName(t.Type)+" "+name)
		lastType = t.Type
	}
	return strings.Join(parts, ", ")
}

func transformTypeName(t message.TransformType) string {
	switch {
	case t == message.TransformENCR:
		return "ENCR"
	case t == message.TransformPRF:
		return "PRF"
	case t == message.TransformKE:
		return "KE"
	case t == message.TransformESN:
		return "ESN"
	case t >= message.TransformADDKE1 && t <= message.TransformADDKE7:
		return fmt.Sprintf("ADDKE%d", t-message.TransformADDKE1+1)
	}
	return fmt.Sprintf("type%d", t)
}

func transformName(t message.Transform) string {
	switch t.Type {
	case message.TransformENCR:
		if t.ID == message.ENCR_AES_GCM_16 {
			return fmt.Sprintf("aes%dgcm16", t.KeyLength)
		}
	case message.TransformPRF:
		if prf, err := keys.PRFByID(t.ID); err == nil {
			return prf.Name
		}
	case message.TransformESN:
		if t.ID == message.ESN_NONE {
			return "no"
		}
	default:
		if t.ID == message.KE_NONE {
			return "none"
		}
		return kex.Name(t.ID)
	}
	return fmt.Sprintf("%d", t.ID)
}

// checkNonce applies RFC 7296 2.10 and 3.9 to a peer's nonce: 16 to 256
// bytes, and at least half the key size of the negotiated PRF, whose
// strength it would otherwise cap.
func checkNonce(prf keys.PRF, n []byte) error {
	least := max(16, prf.Size()/2)
	if len(n) < least || len(n) > 256 {
		return fmt.Errorf("peer's nonce is %d bytes; %s needs %d to 256", len(n), prf.Name, least)
	}
	return nil
}

func invalidKEGroup(n *message.Notify) (uint16, bool) {
	if len(n.Data) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(n.Data), true
}

// completeInit validates the IKE_SA_INIT response and derives the first keys.
func (s *Session) completeInit(hs *handshake, resp *message.Message, proposals []message.Proposal, ke kex.Initiator) error {
	sa := hs.sa
	if resp.SPIr == 0 {
		return errors.New("responder SPI is zero")
	}
	sa.spir = resp.SPIr
	suite, _, err := s.pol.selectProposal(message.Find[*message.SA](resp.Payloads), proposals)
	if err != nil {
		return err
	}
	if len(suite.addke) > 0 && message.FindNotify(resp.Payloads, message.INTERMEDIATE_EXCHANGE_SUPPORTED) == nil {
		// RFC 9370 needs IKE_INTERMEDIATE; without it the ML-KEM
		// exchange cannot happen, and we never silently drop it.
		return fmt.Errorf("%w: responder chose ADDKE without INTERMEDIATE_EXCHANGE_SUPPORTED", ErrDowngrade)
	}
	kePayload := message.Find[*message.KE](resp.Payloads)
	if kePayload == nil || kePayload.Group != suite.ke || suite.ke != ke.Method() {
		return fmt.Errorf("responder KE payload does not match the chosen group %s", kex.Name(suite.ke))
	}
	nonce := message.Find[*message.Nonce](resp.Payloads)
	if nonce == nil {
		return errors.New("response lacks a nonce")
	}
	if err := checkNonce(suite.prf, nonce.Data); err != nil {
		return err
	}
	shared, err := ke.Complete(kePayload.Data)
	if err != nil {
		return err
	}
	if len(suite.addke) < len(s.pol.addke) {
		s.log.Warn("responder chose no post-quantum key exchange: classical-only IKE SA (tunnel.allow_classical)", "ke", kex.Name(suite.ke))
	}
	sa.suite, sa.nr = suite, nonce.Data
	sa.nextMID = 1 // IKE_SA_INIT was message 0
	sa.fragments = message.FindNotify(resp.Payloads, message.IKEV2_FRAGMENTATION_SUPPORTED) != nil
	seed := keys.SKEYSEED(suite.prf, sa.ni, sa.nr, shared)
	k := keys.Derive(suite.prf, seed, sa.ni, sa.nr, sa.spii, sa.spir, keys.Lengths{Enc: suite.encKeyLen()})
	keys.WipeAll(shared, seed)
	if err := sa.setKeys(k); err != nil {
		return err
	}
	s.detectNAT(resp, sa)
	return nil
}

// natHash is SHA-1(SPIi | SPIr | IP | port) of RFC 7296 2.23.
func (s *Session) natNotify(t message.NotifyType, spii, spir uint64, ap netip.AddrPort) *message.Notify {
	return &message.Notify{NotifyType: t, Data: message.NATDetectionHash(spii, spir, ap)}
}

// detectNAT compares the responder's NAT_DETECTION hashes with our view of
// the addresses and floats to the NAT-T port if either side is translated.
func (s *Session) detectNAT(resp *message.Message, sa *ikeSA) {
	src := message.FindNotify(resp.Payloads, message.NAT_DETECTION_SOURCE_IP)
	dst := message.FindNotify(resp.Payloads, message.NAT_DETECTION_DESTINATION_IP)
	if src == nil || dst == nil {
		return
	}
	remoteNAT := string(src.Data) != string(message.NATDetectionHash(sa.spii, sa.spir, s.tr.remoteAddr()))
	localNAT := string(dst.Data) != string(message.NATDetectionHash(sa.spii, sa.spir, s.tr.localAddr()))
	if remoteNAT || localNAT {
		s.log.Info("NAT detected, switching to NAT-T", "local_behind_nat", localNAT, "remote_behind_nat", remoteNAT)
		s.tr.float()
	}
}
