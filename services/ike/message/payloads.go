package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Payload is one IKE payload. marshal appends its body (without the generic
// payload header); unmarshal parses a body and must not retain b.
type Payload interface {
	Type() PayloadType
	marshal(b []byte) []byte
	unmarshal(b []byte) error
}

var errPayloadShort = errors.New("payload body truncated")

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// SA is a Security Association payload.
type SA struct{ Proposals []Proposal }

// Proposal is one proposal substructure.
type Proposal struct {
	Num        uint8
	Protocol   Protocol
	SPI        []byte
	Transforms []Transform
}

// Transform is one transform substructure. KeyLength is the Key Length
// attribute in bits, 0 when absent.
type Transform struct {
	Type      TransformType
	ID        uint16
	KeyLength uint16
}

func (*SA) Type() PayloadType { return PayloadSA }

func (p *SA) marshal(b []byte) []byte {
	for i, pr := range p.Proposals {
		last := byte(2)
		if i == len(p.Proposals)-1 {
			last = 0
		}
		start := len(b)
		b = append(b, last, 0, 0, 0, pr.Num, byte(pr.Protocol), byte(len(pr.SPI)), byte(len(pr.Transforms)))
		b = append(b, pr.SPI...)
		for j, t := range pr.Transforms {
			tlast := byte(3)
			if j == len(pr.Transforms)-1 {
				tlast = 0
			}
			tl := 8
			if t.KeyLength != 0 {
				tl += 4
			}
			b = append(b, tlast, 0)
			b = binary.BigEndian.AppendUint16(b, uint16(tl))
			b = append(b, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			if t.KeyLength != 0 {
				b = binary.BigEndian.AppendUint16(b, 0x8000|attrKeyLength)
				b = binary.BigEndian.AppendUint16(b, t.KeyLength)
			}
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func (p *SA) unmarshal(b []byte) error {
	p.Proposals = nil
	for len(b) > 0 {
		if len(b) < 8 {
			return fmt.Errorf("proposal: %w", errPayloadShort)
		}
		last, plen := b[0], int(binary.BigEndian.Uint16(b[2:]))
		if plen < 8 || plen > len(b) {
			return fmt.Errorf("proposal: bad length %d", plen)
		}
		body := b[:plen]
		b = b[plen:]
		pr := Proposal{Num: body[4], Protocol: Protocol(body[5])}
		spiLen, nt := int(body[6]), int(body[7])
		if 8+spiLen > len(body) {
			return fmt.Errorf("proposal: SPI size %d exceeds proposal", spiLen)
		}
		pr.SPI = clone(body[8 : 8+spiLen])
		ts := body[8+spiLen:]
		for i := 0; i < nt; i++ {
			t, rest, err := parseTransform(ts)
			if err != nil {
				return fmt.Errorf("proposal %d transform %d: %w", pr.Num, i, err)
			}
			pr.Transforms = append(pr.Transforms, t)
			ts = rest
		}
		if len(ts) != 0 {
			return fmt.Errorf("proposal %d: %d trailing bytes", pr.Num, len(ts))
		}
		p.Proposals = append(p.Proposals, pr)
		if last == 0 {
			if len(b) != 0 {
				return fmt.Errorf("proposal: %d bytes after last proposal", len(b))
			}
			break
		}
		if last != 2 {
			return fmt.Errorf("proposal: bad last-substructure value %d", last)
		}
		if len(b) == 0 {
			return fmt.Errorf("proposal: missing proposal after non-last")
		}
	}
	if len(p.Proposals) == 0 {
		return errors.New("SA: no proposals")
	}
	return nil
}

func parseTransform(b []byte) (Transform, []byte, error) {
	if len(b) < 8 {
		return Transform{}, nil, errPayloadShort
	}
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if tl < 8 || tl > len(b) {
		return Transform{}, nil, fmt.Errorf("bad transform length %d", tl)
	}
	t := Transform{Type: TransformType(b[4]), ID: binary.BigEndian.Uint16(b[6:])}
	attrs := b[8:tl]
	for len(attrs) > 0 {
		if len(attrs) < 4 {
			return Transform{}, nil, errPayloadShort
		}
		at := binary.BigEndian.Uint16(attrs)
		if at&0x8000 == 0 {
			// TLV attributes: none is defined for IKEv2, so reject
			// rather than silently accept something we don't understand.
			return Transform{}, nil, fmt.Errorf("unsupported TLV attribute %d", at)
		}
		if at&0x7fff != attrKeyLength {
			return Transform{}, nil, fmt.Errorf("unsupported attribute %d", at&0x7fff)
		}
		t.KeyLength = binary.BigEndian.Uint16(attrs[2:])
		attrs = attrs[4:]
	}
	return t, b[tl:], nil
}

// KE is a Key Exchange payload.
type KE struct {
	Group uint16
	Data  []byte
}

func (*KE) Type() PayloadType { return PayloadKE }

func (p *KE) marshal(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, p.Group)
	return append(append(b, 0, 0), p.Data...)
}

func (p *KE) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("KE: %w", errPayloadShort)
	}
	p.Group, p.Data = binary.BigEndian.Uint16(b), clone(b[4:])
	return nil
}

// ID is an IDi or IDr payload.
type ID struct {
	Responder bool // IDr rather than IDi
	IDType    uint8
	Data      []byte
}

func (p *ID) Type() PayloadType {
	if p.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

func (p *ID) marshal(b []byte) []byte { return append(append(b, p.IDType, 0, 0, 0), p.Data...) }

func (p *ID) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("ID: %w", errPayloadShort)
	}
	p.IDType, p.Data = b[0], clone(b[4:])
	return nil
}

// Body returns the payload body, which is what MACedIDFor[IR] covers.
func (p *ID) Body() []byte { return p.marshal(nil) }

// Cert is a Certificate payload; CertReq a Certificate Request.
type Cert struct {
	Encoding uint8
	Data     []byte
}

func (*Cert) Type() PayloadType          { return PayloadCERT }
func (p *Cert) marshal(b []byte) []byte  { return append(append(b, p.Encoding), p.Data...) }
func (p *Cert) unmarshal(b []byte) error { return unmarshalEncoded(b, &p.Encoding, &p.Data) }

type CertReq struct {
	Encoding uint8
	Data     []byte // concatenated SHA-1 hashes of trusted CAs' public keys
}

func (*CertReq) Type() PayloadType          { return PayloadCERTREQ }
func (p *CertReq) marshal(b []byte) []byte  { return append(append(b, p.Encoding), p.Data...) }
func (p *CertReq) unmarshal(b []byte) error { return unmarshalEncoded(b, &p.Encoding, &p.Data) }

func unmarshalEncoded(b []byte, enc *uint8, data *[]byte) error {
	if len(b) < 1 {
		return fmt.Errorf("CERT: %w", errPayloadShort)
	}
	*enc, *data = b[0], clone(b[1:])
	return nil
}

// Auth is an Authentication payload.
type Auth struct {
	Method uint8
	Data   []byte
}

func (*Auth) Type() PayloadType         { return PayloadAUTH }
func (p *Auth) marshal(b []byte) []byte { return append(append(b, p.Method, 0, 0, 0), p.Data...) }

func (p *Auth) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("AUTH: %w", errPayloadShort)
	}
	p.Method, p.Data = b[0], clone(b[4:])
	return nil
}

// Nonce is a Nonce payload.
type Nonce struct{ Data []byte }

func (*Nonce) Type() PayloadType         { return PayloadNonce }
func (p *Nonce) marshal(b []byte) []byte { return append(b, p.Data...) }

func (p *Nonce) unmarshal(b []byte) error {
	// RFC 7296 2.10: between 16 and 256 octets.
	if len(b) < 16 || len(b) > 256 {
		return fmt.Errorf("Nonce: bad length %d", len(b))
	}
	p.Data = clone(b)
	return nil
}

// Notify is a Notify payload.
type Notify struct {
	Protocol   Protocol
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }

func (p *Notify) marshal(b []byte) []byte {
	b = append(b, byte(p.Protocol), byte(len(p.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(p.NotifyType))
	return append(append(b, p.SPI...), p.Data...)
}

func (p *Notify) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("Notify: %w", errPayloadShort)
	}
	spiLen := int(b[1])
	if 4+spiLen > len(b) {
		return fmt.Errorf("Notify: SPI size %d exceeds payload", spiLen)
	}
	p.Protocol, p.NotifyType = Protocol(b[0]), NotifyType(binary.BigEndian.Uint16(b[2:]))
	p.SPI, p.Data = clone(b[4:4+spiLen]), clone(b[4+spiLen:])
	return nil
}

// Delete is a Delete payload.
type Delete struct {
	Protocol Protocol
	SPIs     [][]byte // empty for the IKE SA
}

func (*Delete) Type() PayloadType { return PayloadDelete }

func (p *Delete) marshal(b []byte) []byte {
	size := 0
	if len(p.SPIs) > 0 {
		size = len(p.SPIs[0])
	}
	b = append(b, byte(p.Protocol), byte(size))
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.SPIs)))
	for _, s := range p.SPIs {
		b = append(b, s...)
	}
	return b
}

func (p *Delete) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("Delete: %w", errPayloadShort)
	}
	p.Protocol = Protocol(b[0])
	size, n := int(b[1]), int(binary.BigEndian.Uint16(b[2:]))
	if size*n != len(b)-4 {
		return fmt.Errorf("Delete: %d SPIs of %d bytes don't fill %d bytes", n, size, len(b)-4)
	}
	if n > 0 && size == 0 {
		return errors.New("Delete: zero-size SPIs")
	}
	p.SPIs = nil
	for i := 0; i < n; i++ {
		p.SPIs = append(p.SPIs, clone(b[4+i*size:4+(i+1)*size]))
	}
	return nil
}

// VendorID is a Vendor ID payload.
type VendorID struct{ Data []byte }

func (*VendorID) Type() PayloadType          { return PayloadVendorID }
func (p *VendorID) marshal(b []byte) []byte  { return append(b, p.Data...) }
func (p *VendorID) unmarshal(b []byte) error { p.Data = clone(b); return nil }

// TS is a TSi or TSr payload.
type TS struct {
	Responder bool // TSr rather than TSi
	Selectors []Selector
}

// Selector is one traffic selector; Start and End are of the same family.
type Selector struct {
	IPProto            uint8
	StartPort, EndPort uint16
	Start, End         netip.Addr
}

// SelectorFromPrefix covers all of p, any protocol and port.
func SelectorFromPrefix(p netip.Prefix) Selector {
	p = p.Masked()
	start := p.Addr()
	end := start.AsSlice()
	bits := p.Bits()
	for i := range end {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				end[i] |= 0x80 >> bit
			}
		}
	}
	e, _ := netip.AddrFromSlice(end)
	return Selector{StartPort: 0, EndPort: 0xffff, Start: start, End: e}
}

// Prefix returns the selector's range as a prefix if it is exactly one.
func (s Selector) Prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= s.Start.BitLen(); bits++ {
		p := netip.PrefixFrom(s.Start, bits).Masked()
		if p.Addr() == s.Start && SelectorFromPrefix(p).End == s.End {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (p *TS) Type() PayloadType {
	if p.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

func (p *TS) marshal(b []byte) []byte {
	b = append(b, byte(len(p.Selectors)), 0, 0, 0)
	for _, s := range p.Selectors {
		typ, l := TSIPv4AddrRange, 16
		if s.Start.Is6() {
			typ, l = TSIPv6AddrRange, 40
		}
		b = append(b, typ, s.IPProto)
		b = binary.BigEndian.AppendUint16(b, uint16(l))
		b = binary.BigEndian.AppendUint16(b, s.StartPort)
		b = binary.BigEndian.AppendUint16(b, s.EndPort)
		b = append(b, s.Start.AsSlice()...)
		b = append(b, s.End.AsSlice()...)
	}
	return b
}

func (p *TS) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("TS: %w", errPayloadShort)
	}
	n := int(b[0])
	b = b[4:]
	p.Selectors = nil
	for i := 0; i < n; i++ {
		if len(b) < 8 {
			return fmt.Errorf("TS selector %d: %w", i, errPayloadShort)
		}
		typ, l := b[0], int(binary.BigEndian.Uint16(b[2:]))
		alen := 4
		switch typ {
		case TSIPv4AddrRange:
		case TSIPv6AddrRange:
			alen = 16
		default:
			return fmt.Errorf("TS selector %d: unsupported type %d", i, typ)
		}
		if l != 8+2*alen || l > len(b) {
			return fmt.Errorf("TS selector %d: bad length %d", i, l)
		}
		s := Selector{IPProto: b[1], StartPort: binary.BigEndian.Uint16(b[4:]), EndPort: binary.BigEndian.Uint16(b[6:])}
		s.Start, _ = netip.AddrFromSlice(b[8 : 8+alen])
		s.End, _ = netip.AddrFromSlice(b[8+alen : 8+2*alen])
		p.Selectors = append(p.Selectors, s)
		b = b[l:]
	}
	if len(b) != 0 {
		return fmt.Errorf("TS: %d trailing bytes", len(b))
	}
	return nil
}

// Encrypted is the SK payload: IV, ciphertext and ICV as one opaque body.
// Inner is the type of the first payload inside; it must be the last payload
// of a chain because its Next Payload field names the inner chain.
type Encrypted struct {
	Inner PayloadType
	Body  []byte
}

func (*Encrypted) Type() PayloadType          { return PayloadSK }
func (p *Encrypted) marshal(b []byte) []byte  { return append(b, p.Body...) }
func (p *Encrypted) unmarshal(b []byte) error { p.Body = clone(b); return nil }

// EncryptedFragment is the SKF payload of RFC 7383. Inner is only meaningful
// in fragment 1 and zero in the others.
type EncryptedFragment struct {
	Inner         PayloadType
	Number, Total uint16
	Body          []byte
}

func (*EncryptedFragment) Type() PayloadType { return PayloadSKF }

func (p *EncryptedFragment) marshal(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, p.Number)
	b = binary.BigEndian.AppendUint16(b, p.Total)
	return append(b, p.Body...)
}

func (p *EncryptedFragment) unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("SKF: %w", errPayloadShort)
	}
	p.Number, p.Total, p.Body = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), clone(b[4:])
	if p.Number == 0 || p.Total == 0 || p.Number > p.Total {
		return fmt.Errorf("SKF: fragment %d of %d", p.Number, p.Total)
	}
	return nil
}

// Unknown is a payload type this codec does not parse; it survives a
// round trip so that non-critical extensions can be skipped.
type Unknown struct {
	T        PayloadType
	Critical bool
	Data     []byte
}

func (p *Unknown) Type() PayloadType        { return p.T }
func (p *Unknown) marshal(b []byte) []byte  { return append(b, p.Data...) }
func (p *Unknown) unmarshal(b []byte) error { p.Data = clone(b); return nil }
