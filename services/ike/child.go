package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

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
