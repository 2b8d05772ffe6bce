package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// IKE_AUTH (RFC 7296 1.2, 2.15): authentication of both ends and the first
// Child SA. We only ever initiate it; when we refuse the responder, the
// AUTHENTICATION_FAILED we send is an INFORMATIONAL (informational.go).

// authExchange runs IKE_AUTH and returns the negotiated first Child SA.
func (s *Session) authExchange(ctx context.Context, hs *handshake) (*childSA, error) {
	sa := hs.sa
	var intAuth []byte
	if hs.intI != nil {
		intAuth = keys.IntAuthSuffix(hs.intI, hs.intR, sa.nextMID)
	}
	idi := s.me.payload(false)
	octets := keys.SignedOctets(sa.suite.prf, hs.request1, sa.nr, sa.keys.Pi, idi.Body(), intAuth)
	auth, err := s.auth.sign(sa.suite.prf, octets)
	if err != nil {
		return nil, err
	}
	spi := s.newESPSPI()
	prop := espProposal(binary.BigEndian.AppendUint32(nil, spi))
	payloads := []message.Payload{idi}
	payloads = append(payloads, s.auth.certPayloads()...)
	// Every IKE_AUTH is a fresh start: the previous IKE SA, if any, was
	// torn down or lost (DPD). INITIAL_CONTACT (RFC 7296 2.4) has the edge
	// drop whatever it still keeps of it instead of holding it for hours.
	payloads = append(payloads, &message.Notify{NotifyType: message.INITIAL_CONTACT})
	payloads = append(payloads, s.peer.payload(true), auth,
		&message.SA{Proposals: []message.Proposal{prop}},
		s.selectors(false, s.cfg.LocalSubnets), s.selectors(true, s.cfg.RemoteSubnets))
	resp, _, err := s.request(ctx, sa, message.IKE_AUTH, payloads)
	if err != nil {
		return nil, fmt.Errorf("IKE_AUTH: %w", err)
	}
	if n := message.FindNotify(resp.Payloads, message.AUTHENTICATION_FAILED); n != nil {
		return nil, &ErrRefused{Exchange: message.IKE_AUTH, Notify: n.NotifyType}
	}
	idr := message.FindID(resp.Payloads, true)
	if !s.peer.matches(idr) {
		return nil, fmt.Errorf("IKE_AUTH: %w: responder identity does not match %q", ErrAuthFailed, s.peer.text)
	}
	octetsR := keys.SignedOctets(sa.suite.prf, hs.response, sa.ni, sa.keys.Pr, idr.Body(), intAuth)
	if err := s.auth.verify(sa.suite.prf, octetsR, message.Find[*message.Auth](resp.Payloads), message.FindAll[*message.Cert](resp.Payloads), s.peer); err != nil {
		return nil, fmt.Errorf("IKE_AUTH: %w", err)
	}
	// From here on the IKE SA is authenticated; Child SA errors come next.
	s.ike = sa
	if n := message.FirstError(resp.Payloads); n != nil {
		return nil, &ErrRefused{Exchange: message.IKE_AUTH, Notify: n.NotifyType}
	}
	if message.FindNotify(resp.Payloads, message.USE_TRANSPORT_MODE) != nil {
		return nil, errors.New("IKE_AUTH: responder wants transport mode, we only do tunnels")
	}
	childSuite, peerSPI, err := s.pol.selectSuite(message.Find[*message.SA](resp.Payloads), prop)
	if err != nil {
		return nil, fmt.Errorf("IKE_AUTH child SA: %w", err)
	}
	c, err := s.newChild(resp.Payloads, spi, peerSPI, childSuite)
	if err != nil {
		return nil, fmt.Errorf("IKE_AUTH child SA: %w", err)
	}
	s.deriveChild(c, sa, nil, sa.ni, sa.nr, true)
	return c, nil
}
