package firewall

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Kernel keys the nftables library has no names for.
const (
	metaSecpath = expr.MetaKey(25) // NFT_META_SECPATH: packet was decrypted by IPsec
	rtXFRM      = expr.RtKey(4)    // NFT_RT_XFRM: route is an IPsec bundle
)

// Small builders, one per nft match, so rules read like their nft form.

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, 16)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func iif(name string) []expr.Any { return ifname(expr.MetaKeyIIFNAME, name) }
func oif(name string) []expr.Any { return ifname(expr.MetaKeyOIFNAME, name) }

// ctState matches any of the given conntrack state bits.
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// icmpType matches ICMP or ICMPv6 (p) messages of type t.
func icmpType(p, t byte) []expr.Any {
	return append(l4proto(p),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{t}},
	)
}

// dport matches protocol p with destination port n.
func dport(p byte, n uint16) []expr.Any {
	return append(l4proto(p),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, n)},
	)
}

// addr matches the source (src) or destination address against prefix p,
// including the family check an inet table needs.
func addr(p netip.Prefix, src bool) []expr.Any {
	proto, off, size := byte(unix.NFPROTO_IPV4), uint32(16), 4
	if p.Addr().Is6() {
		proto, off, size = unix.NFPROTO_IPV6, 24, 16
	}
	if src {
		off -= uint32(size)
	}
	mask := netip.PrefixFrom(p.Addr(), p.Bits()).Masked().Addr().AsSlice()
	ones := make([]byte, size)
	for i := range p.Bits() {
		ones[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(size)},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(size), Mask: ones, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mask},
	}
}

// ipsecRoute matches packets whose route is (want) or is not an IPsec bundle.
// The kernel stores it as a host-order u32.
func ipsecRoute(want bool) []expr.Any {
	return []expr.Any{
		&expr.Rt{Register: 1, Key: rtXFRM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, b2u(want))},
	}
}

// decrypted matches packets that did (want) or did not arrive through IPsec.
// The kernel stores it as one byte.
func decrypted(want bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: metaSecpath, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(b2u(want))}},
	}
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }
func drop() expr.Any   { return &expr.Verdict{Kind: expr.VerdictDrop} }
