package xfrm

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The kernel here has no XFRM, so this checks the request we would send.
func TestStateTranslation(t *testing.T) {
	key := make([]byte, 36)
	sa := SA{
		Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.1"), SPI: 0xc0ffee01,
		Key: key, ICVBits: 128, ReplayWindow: 64, ReqID: 7, Encap: &Encap{SrcPort: 4500, DstPort: 4500},
		SoftLife: time.Hour, HardLife: 66 * time.Minute,
	}
	st := state(sa)
	if st.Mode != netlink.XFRM_MODE_TUNNEL || st.Proto != netlink.XFRM_PROTO_ESP || st.Spi != 0xc0ffee01 || st.Reqid != 7 {
		t.Errorf("state header %+v", st)
	}
	if st.Aead == nil || st.Aead.Name != "rfc4106(gcm(aes))" || len(st.Aead.Key) != 36 || st.Aead.ICVLen != 128 {
		t.Errorf("aead %+v", st.Aead)
	}
	if st.ReplayWindow != 64 || st.Limits.TimeSoft != 3600 || st.Limits.TimeHard != 3960 {
		t.Errorf("replay/limits %d %+v", st.ReplayWindow, st.Limits)
	}
	if st.Encap == nil || st.Encap.Type != netlink.XFRM_ENCAP_ESPINUDP || st.Encap.SrcPort != 4500 {
		t.Errorf("encap %+v", st.Encap)
	}
	if !st.Src.Equal(sa.Src.AsSlice()) || !st.Dst.Equal(sa.Dst.AsSlice()) {
		t.Errorf("addresses %v %v", st.Src, st.Dst)
	}
}

func TestPolicyTranslation(t *testing.T) {
	p := Policy{
		Local: netip.MustParsePrefix("198.18.1.0/24"), Remote: netip.MustParsePrefix("198.18.0.0/24"),
		LocalGW: netip.MustParseAddr("192.0.2.2"), RemoteGW: netip.MustParseAddr("192.0.2.1"), ReqID: 3,
	}
	ps := policies(p)
	if len(ps) != 3 {
		t.Fatalf("%d policies", len(ps))
	}
	out, in, fwd := ps[0], ps[1], ps[2]
	if out.Dir != netlink.XFRM_DIR_OUT || out.Src.String() != "198.18.1.0/24" || out.Dst.String() != "198.18.0.0/24" {
		t.Errorf("out %v", out)
	}
	if !out.Tmpls[0].Src.Equal(p.LocalGW.AsSlice()) || out.Tmpls[0].Reqid != 3 || out.Tmpls[0].Mode != netlink.XFRM_MODE_TUNNEL {
		t.Errorf("out tmpl %v", out.Tmpls)
	}
	if in.Dir != netlink.XFRM_DIR_IN || in.Src.String() != "198.18.0.0/24" || !in.Tmpls[0].Src.Equal(p.RemoteGW.AsSlice()) {
		t.Errorf("in %v", in)
	}
	if fwd.Dir != netlink.XFRM_DIR_FWD || fwd.Dst.String() != "198.18.1.0/24" {
		t.Errorf("fwd %v", fwd)
	}
}

func TestMemory(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	sa := SA{SPI: 1}
	if err := m.AddSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := m.AddSA(ctx, sa); err == nil {
		t.Error("duplicate SPI accepted")
	}
	if err := m.DelSA(ctx, sa); err != nil || len(m.SAs()) != 0 {
		t.Fatalf("delete: %v, %v", err, m.SAs())
	}
	if err := m.DelSA(ctx, sa); err == nil {
		t.Error("deleting a missing SA succeeded")
	}
	p := Policy{Local: netip.MustParsePrefix("198.18.1.0/24")}
	if err := m.AddPolicy(ctx, p); err != nil || len(m.Policies()) != 1 {
		t.Fatal(err)
	}
	if err := m.DelPolicy(ctx, p); err != nil || len(m.Policies()) != 0 {
		t.Fatal(err)
	}
}

// Memory updates a policy for existing selectors, as XfrmPolicyUpdate does,
// and keeps its own copy of keys, as the kernel does.
func TestMemoryLikeNetlink(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	p := Policy{Local: netip.MustParsePrefix("198.18.1.0/24"), Remote: netip.MustParsePrefix("198.18.0.0/24"),
		LocalGW: netip.MustParseAddr("192.0.2.2"), RemoteGW: netip.MustParseAddr("192.0.2.1"), ReqID: 1}
	if err := m.AddPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	q := p
	q.LocalGW, q.ReqID = netip.MustParseAddr("192.0.2.3"), 2
	if err := m.AddPolicy(ctx, q); err != nil {
		t.Fatalf("second policy for the same selectors: %v", err)
	}
	if got := m.Policies(); len(got) != 1 || got[0] != q {
		t.Fatalf("policies %v, want only the update %v", got, q)
	}
	key := []byte{1, 2, 3, 4}
	if err := m.AddSA(ctx, SA{SPI: 0x1000, Key: key}); err != nil {
		t.Fatal(err)
	}
	clear(key)
	if got := m.SAs()[0].Key; got[0] != 1 {
		t.Fatalf("the installed key changed with the caller's slice: %v", got)
	}
	if err := m.AddSA(ctx, SA{SPI: 0x1000}); err == nil {
		t.Fatal("duplicate SPI accepted")
	}
}
