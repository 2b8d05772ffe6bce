package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

func (s *Session) selectors(responder bool, ps []netip.Prefix) *message.TS {
	ts := &message.TS{Responder: responder}
	for _, p := range ps {
		ts.Selectors = append(ts.Selectors, message.SelectorFromPrefix(p))
	}
	return ts
}

// narrowed checks that the responder's selectors are prefixes inside what
// we proposed (it may narrow, never widen) and returns them.
func narrowed(ts *message.TS, ours []netip.Prefix) ([]netip.Prefix, error) {
	if ts == nil || len(ts.Selectors) == 0 {
		return nil, errors.New("missing traffic selectors")
	}
	var out []netip.Prefix
	for _, sel := range ts.Selectors {
		p, ok := sel.Prefix()
		if !ok || sel.IPProto != 0 || sel.StartPort != 0 || sel.EndPort != 0xffff {
			return nil, fmt.Errorf("selector %v-%v proto %d ports %d-%d is not a whole subnet", sel.Start, sel.End, sel.IPProto, sel.StartPort, sel.EndPort)
		}
		if !slices.ContainsFunc(ours, func(o netip.Prefix) bool { return o.Bits() <= p.Bits() && o.Contains(p.Addr()) }) {
			return nil, fmt.Errorf("selector %v is outside the configured subnets", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// maxPolicyPairs bounds the local x remote selector pairs of a Child SA.
const maxPolicyPairs = 64

// newChild builds a Child SA from a response's SA and TS payloads.
func (s *Session) newChild(resp []message.Payload, spiIn uint32, peerSPI []byte, cs suite) (*childSA, error) {
	local, err := narrowed(message.FindTS(resp, false), s.cfg.LocalSubnets)
	if err != nil {
		return nil, fmt.Errorf("TSi: %w", err)
	}
	remote, err := narrowed(message.FindTS(resp, true), s.cfg.RemoteSubnets)
	if err != nil {
		return nil, fmt.Errorf("TSr: %w", err)
	}
	// Each local x remote pair is a kernel policy (three, with in and fwd):
	// an authenticated but hostile edge narrowing to hundreds of /32s must
	// not make tens of thousands of them.
	if n := len(local) * len(remote); n > maxPolicyPairs {
		return nil, fmt.Errorf("traffic selectors: %d local x %d remote = %d subnet pairs, at most %d", len(local), len(remote), n, maxPolicyPairs)
	}
	spiOut := binary.BigEndian.Uint32(peerSPI)
	if spiOut < 256 {
		return nil, fmt.Errorf("responder SPI %d is reserved", spiOut)
	}
	return &childSA{spiIn: spiIn, spiOut: spiOut, encrBits: cs.encrBits, local: local, remote: remote}, nil
}

// deriveChild computes KEYMAT (RFC 7296 2.17, RFC 9370 2.2.4) and fills in
// the kernel SAs: initiator-to-responder keys first, where the initiator is
// the side that started the exchange creating the Child SA (weInitiated).
func (s *Session) deriveChild(c *childSA, sa *ikeSA, shared [][]byte, ni, nr []byte, weInitiated bool) {
	n := int(c.encrBits)/8 + 4
	km := keys.ChildKeymat(sa.suite.prf, sa.keys.D, shared, ni, nr, 2*n)
	outKey, inKey := km[:n], km[n:]
	if !weInitiated {
		outKey, inKey = inKey, outKey
	}
	localGW, remoteGW := s.tr.localAddr(), s.tr.remoteAddr()
	var encapOut, encapIn *xfrm.Encap
	if s.tr.floated {
		encapOut = &xfrm.Encap{SrcPort: localGW.Port(), DstPort: remoteGW.Port()}
		encapIn = &xfrm.Encap{SrcPort: remoteGW.Port(), DstPort: localGW.Port()}
	}
	base := xfrm.SA{ICVBits: 128, ReplayWindow: s.opt.ReplayWindow, ReqID: s.reqid,
		SoftLife: s.childLife, HardLife: s.childLife + s.childLife/10}
	c.out, c.in = base, base
	c.out.Src, c.out.Dst, c.out.SPI, c.out.Key, c.out.Encap = localGW.Addr().Unmap(), remoteGW.Addr().Unmap(), c.spiOut, outKey, encapOut
	c.in.Src, c.in.Dst, c.in.SPI, c.in.Key, c.in.Encap = remoteGW.Addr().Unmap(), localGW.Addr().Unmap(), c.spiIn, inKey, encapIn
	c.in.Inbound = true
	c.created = time.Now()
	c.rekeyAt = c.created.Add(s.jitter(s.childLife * 9 / 10))
}

// installChild adds the SAs (and, for the first Child SA, the policies for
// every local x remote subnet pair). Rekeyed SAs share the reqid, so the
// policies stay and the kernel switches to the newest SA.
func (s *Session) installChild(ctx context.Context, c *childSA) error {
	inst := s.opt.Installer
	if err := inst.AddSA(ctx, c.in); err != nil {
		return err
	}
	if err := inst.AddSA(ctx, c.out); err != nil {
		_ = inst.DelSA(ctx, c.in)
		return err
	}
	s.children = append(s.children, c)
	if len(s.policies) == 0 {
		for _, l := range c.local {
			for _, r := range c.remote {
				p := xfrm.Policy{Local: l, Remote: r, LocalGW: c.out.Src, RemoteGW: c.out.Dst, ReqID: s.reqid}
				if err := inst.AddPolicy(ctx, p); err != nil {
					return err
				}
				s.policies = append(s.policies, p)
			}
		}
	}
	s.log.Info("child SA installed", "spi_in", fmt.Sprintf("%08x", c.spiIn), "spi_out", fmt.Sprintf("%08x", c.spiOut),
		"local", c.local, "remote", c.remote, "esp", fmt.Sprintf("aes%dgcm16", c.encrBits))
	return nil
}

func (s *Session) removeChild(ctx context.Context, c *childSA) error {
	s.children = slices.DeleteFunc(s.children, func(x *childSA) bool { return x == c })
	err := errors.Join(s.opt.Installer.DelSA(ctx, c.in), s.opt.Installer.DelSA(ctx, c.out))
	c.wipe()
	return err
}

// rekeyChild replaces c with a new Child SA from a fresh hybrid exchange
// (CREATE_CHILD_SA + IKE_FOLLOWUP_KE), installing the new SAs before the
// old ones are deleted.
func (s *Session) rekeyChild(ctx context.Context, c *childSA) error {
	sa := s.ike
	s.rekeying = ourRekeyChild // an edge's rekey of c now collides (collision.go)
	defer func() { s.rekeying = ourRekeyNone }()
	spi := s.newESPSPI()
	ni := s.random(nonceLen)
	ke, err := kex.NewInitiator(sa.suite.ke, s.opt.Rand)
	if err != nil {
		return err
	}
	prop := s.pol.rekeyProposal(message.ProtoESP, binary.BigEndian.AppendUint32(nil, spi), suite{encrBits: c.encrBits, ke: sa.suite.ke, addke: sa.suite.addke})
	resp, _, err := s.request(ctx, sa, message.CREATE_CHILD_SA, []message.Payload{
		&message.Notify{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, c.spiIn), NotifyType: message.REKEY_SA},
		&message.SA{Proposals: []message.Proposal{prop}},
		&message.Nonce{Data: ni},
		&message.KE{Group: sa.suite.ke, Data: ke.Public()},
		s.selectors(false, c.local), s.selectors(true, c.remote),
	})
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	cs, peerSPI, shared, nr, err := s.completeCreate(ctx, sa, resp.Payloads, prop, ke)
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	nc, err := s.newChild(resp.Payloads, spi, peerSPI, cs)
	if err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	nc.rekeyOf, nc.ours, nc.ni, nc.nr = c, true, ni, nr
	s.deriveChild(nc, sa, shared, ni, nr, true)
	keys.WipeAll(shared...)
	if err := s.installChild(ctx, nc); err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	s.update(func(st *Status) { st.ChildRekeys++ })
	// The edge's rekey of c, if half done, finishes first: both ends must
	// settle the collision on the same four nonces.
	if pc := sa.peerCreate; pc != nil && pc.old == c {
		if err := s.awaitPeerCreate(ctx, sa); err != nil {
			return fmt.Errorf("child SA rekey: %w", err)
		}
	}
	s.settleChildRekey(c)
	// Break only after make: the old SA kept carrying traffic until here.
	if err := s.pruneChildren(ctx, time.Now()); err != nil {
		return fmt.Errorf("child SA rekey: %w", err)
	}
	return nil
}

// completeCreate validates a CREATE_CHILD_SA response, completes KE(0) and
// runs the IKE_FOLLOWUP_KE exchanges for the additional key exchanges.
// It returns the negotiated suite, the responder's SPI and SK(0..n).
func (s *Session) completeCreate(ctx context.Context, sa *ikeSA, resp []message.Payload, prop message.Proposal, ke kex.Initiator) (suite, []byte, [][]byte, []byte, error) {
	if n := message.FirstError(resp); n != nil {
		return suite{}, nil, nil, nil, &ErrRefused{Exchange: message.CREATE_CHILD_SA, Notify: n.NotifyType}
	}
	cs, peerSPI, err := s.pol.selectSuite(message.Find[*message.SA](resp), prop)
	if err != nil {
		return suite{}, nil, nil, nil, err
	}
	nonce := message.Find[*message.Nonce](resp)
	kr := message.Find[*message.KE](resp)
	if nonce == nil || kr == nil || kr.Group != cs.ke {
		return suite{}, nil, nil, nil, errors.New("response lacks nonce or matching KE payload")
	}
	if err := checkNonce(sa.suite.prf, nonce.Data); err != nil {
		return suite{}, nil, nil, nil, err
	}
	shared0, err := ke.Complete(kr.Data)
	if err != nil {
		return suite{}, nil, nil, nil, err
	}
	shared := [][]byte{shared0}
	link := message.FindNotify(resp, message.ADDITIONAL_KEY_EXCHANGE)
	for i, method := range cs.addke {
		if link == nil {
			return suite{}, nil, nil, nil, fmt.Errorf("no ADDITIONAL_KEY_EXCHANGE link for ADDKE%d", i+1)
		}
		ss, next, err := s.followupKE(ctx, sa, method, link.Data)
		if err != nil {
			return suite{}, nil, nil, nil, fmt.Errorf("IKE_FOLLOWUP_KE %d: %w", i+1, err)
		}
		shared, link = append(shared, ss), next
	}
	return cs, peerSPI, shared, nonce.Data, nil
}

// followupKE runs one IKE_FOLLOWUP_KE exchange (RFC 9370 2.2.4).
func (s *Session) followupKE(ctx context.Context, sa *ikeSA, method uint16, link []byte) ([]byte, *message.Notify, error) {
	ke, err := kex.NewInitiator(method, s.opt.Rand)
	if err != nil {
		return nil, nil, err
	}
	resp, _, err := s.request(ctx, sa, message.IKE_FOLLOWUP_KE, []message.Payload{
		&message.KE{Group: method, Data: ke.Public()},
		&message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: link},
	})
	if err != nil {
		return nil, nil, err
	}
	if n := message.FirstError(resp.Payloads); n != nil {
		return nil, nil, &ErrRefused{Exchange: message.IKE_FOLLOWUP_KE, Notify: n.NotifyType}
	}
	kr := message.Find[*message.KE](resp.Payloads)
	if kr == nil || kr.Group != method {
		return nil, nil, fmt.Errorf("response lacks a %s KE payload", kex.Name(method))
	}
	ss, err := ke.Complete(kr.Data)
	if err != nil {
		return nil, nil, err
	}
	return ss, message.FindNotify(resp.Payloads, message.ADDITIONAL_KEY_EXCHANGE), nil
}
