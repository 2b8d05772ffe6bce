package xfrm

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Netlink installs into the kernel's XFRM database. The zero value uses the
// current network namespace.
type Netlink struct{}

// gcmAlgo is the kernel name of ESP AES-GCM with an explicit 8-byte IV.
const gcmAlgo = "rfc4106(gcm(aes))"

func (Netlink) AddSA(_ context.Context, sa SA) error {
	if err := netlink.XfrmStateAdd(state(sa)); err != nil {
		return fmt.Errorf("xfrm add %v: %w", sa, err)
	}
	return nil
}

func (Netlink) DelSA(_ context.Context, sa SA) error {
	if err := netlink.XfrmStateDel(state(sa)); err != nil {
		return fmt.Errorf("xfrm delete %v: %w", sa, err)
	}
	return nil
}

func (Netlink) AddPolicy(_ context.Context, p Policy) error {
	for _, pol := range policies(p) {
		if err := netlink.XfrmPolicyUpdate(pol); err != nil {
			return fmt.Errorf("xfrm policy %v %v->%v: %w", pol.Dir, pol.Src, pol.Dst, err)
		}
	}
	return nil
}

func (Netlink) DelPolicy(_ context.Context, p Policy) error {
	var first error
	for _, pol := range policies(p) {
		if err := netlink.XfrmPolicyDel(pol); err != nil && first == nil {
			first = fmt.Errorf("xfrm policy delete %v %v->%v: %w", pol.Dir, pol.Src, pol.Dst, err)
		}
	}
	return first
}

func (Netlink) Stats(_ context.Context, sa SA) (Counters, error) {
	got, err := netlink.XfrmStateGet(state(sa))
	if err != nil {
		return Counters{}, fmt.Errorf("xfrm get %v: %w", sa, err)
	}
	return Counters{Bytes: got.Statistics.Bytes, Packets: got.Statistics.Packets}, nil
}

// state translates an SA into the netlink request: tunnel mode, AEAD
// rfc4106 with the salt appended to the key, replay window and lifetimes
// (soft expiry only informs; the daemon rekeys before it).
func state(sa SA) *netlink.XfrmState {
	st := &netlink.XfrmState{
		Src:          ip(sa.Src),
		Dst:          ip(sa.Dst),
		Proto:        netlink.XFRM_PROTO_ESP,
		Mode:         netlink.XFRM_MODE_TUNNEL,
		Spi:          int(sa.SPI),
		Reqid:        int(sa.ReqID),
		ReplayWindow: int(sa.ReplayWindow),
		Aead:         &netlink.XfrmStateAlgo{Name: gcmAlgo, Key: sa.Key, ICVLen: sa.ICVBits},
		Limits: netlink.XfrmStateLimits{
			ByteSoft: ^uint64(0), ByteHard: ^uint64(0), PacketSoft: ^uint64(0), PacketHard: ^uint64(0),
			TimeSoft: uint64(sa.SoftLife.Seconds()), TimeHard: uint64(sa.HardLife.Seconds()),
		},
	}
	if sa.Encap != nil {
		st.Encap = &netlink.XfrmStateEncap{Type: netlink.XFRM_ENCAP_ESPINUDP, SrcPort: int(sa.Encap.SrcPort), DstPort: int(sa.Encap.DstPort)}
	}
	return st
}

func policies(p Policy) []*netlink.XfrmPolicy {
	tmpl := func(src, dst netip.Addr) []netlink.XfrmPolicyTmpl {
		return []netlink.XfrmPolicyTmpl{{Src: ip(src), Dst: ip(dst), Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: int(p.ReqID)}}
	}
	out := &netlink.XfrmPolicy{Src: ipnet(p.Local), Dst: ipnet(p.Remote), Dir: netlink.XFRM_DIR_OUT, Tmpls: tmpl(p.LocalGW, p.RemoteGW)}
	in := &netlink.XfrmPolicy{Src: ipnet(p.Remote), Dst: ipnet(p.Local), Dir: netlink.XFRM_DIR_IN, Tmpls: tmpl(p.RemoteGW, p.LocalGW)}
	fwd := &netlink.XfrmPolicy{Src: ipnet(p.Remote), Dst: ipnet(p.Local), Dir: netlink.XFRM_DIR_FWD, Tmpls: tmpl(p.RemoteGW, p.LocalGW)}
	return []*netlink.XfrmPolicy{out, in, fwd}
}

func ip(a netip.Addr) net.IP { return net.IP(a.Unmap().AsSlice()) }

func ipnet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: ip(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
