package message

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// GenericHeaderLen is the size of the generic payload header.
const GenericHeaderLen = 4

// maxPayloads bounds the number of payloads in one chain so a hostile
// message cannot make us allocate without limit.
const maxPayloads = 64

// ErrUnsupportedCritical reports an unknown payload with the critical bit set.
var ErrUnsupportedCritical = errors.New("unsupported critical payload")

func newPayload(t PayloadType, critical bool) Payload {
	switch t {
	case PayloadSA:
		return &SA{}
	case PayloadKE:
		return &KE{}
	case PayloadIDi:
		return &ID{}
	case PayloadIDr:
		return &ID{Responder: true}
	case PayloadCERT:
		return &Cert{}
	case PayloadCERTREQ:
		return &CertReq{}
	case PayloadAUTH:
		return &Auth{}
	case PayloadNonce:
		return &Nonce{}
	case PayloadNotify:
		return &Notify{}
	case PayloadDelete:
		return &Delete{}
	case PayloadVendorID:
		return &VendorID{}
	case PayloadTSi:
		return &TS{}
	case PayloadTSr:
		return &TS{Responder: true}
	case PayloadSK:
		return &Encrypted{}
	case PayloadSKF:
		return &EncryptedFragment{}
	}
	return &Unknown{T: t, Critical: critical}
}

// MarshalPayloads encodes a payload chain and returns the type of its first
// payload, which goes in the preceding Next Payload field.
func MarshalPayloads(b []byte, ps []Payload) (PayloadType, []byte, error) {
	for i, p := range ps {
		next := PayloadNone
		switch e := p.(type) {
		case *Encrypted:
			next = e.Inner
		case *EncryptedFragment:
			next = e.Inner
		}
		if i+1 < len(ps) {
			if next != PayloadNone {
				return 0, nil, errors.New("encrypted payload must be last")
			}
			next = ps[i+1].Type()
		}
		start := len(b)
		crit := byte(0)
		if u, ok := p.(*Unknown); ok && u.Critical {
			crit = 0x80
		}
		b = append(b, byte(next), crit, 0, 0)
		b = p.marshal(b)
		if len(b)-start > 0xffff {
			return 0, nil, fmt.Errorf("%v payload too long (%d bytes)", p.Type(), len(b)-start)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	if len(ps) == 0 {
		return PayloadNone, b, nil
	}
	return ps[0].Type(), b, nil
}

// ParsePayloads decodes a payload chain starting with type first. An SK or
// SKF payload ends the chain; its inner type is returned in the payload.
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	var ps []Payload
	next := first
	for next != PayloadNone {
		if len(ps) == maxPayloads {
			return nil, fmt.Errorf("more than %d payloads", maxPayloads)
		}
		if len(b) < GenericHeaderLen {
			return nil, fmt.Errorf("%v payload header: %w", next, errShort)
		}
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l < GenericHeaderLen || l > len(b) {
			return nil, fmt.Errorf("%v payload: bad length %d (%d available)", next, l, len(b))
		}
		critical := b[1]&0x80 != 0
		p := newPayload(next, critical)
		if u, ok := p.(*Unknown); ok && u.Critical {
			return nil, fmt.Errorf("payload type %d: %w", next, ErrUnsupportedCritical)
		}
		if err := p.unmarshal(b[GenericHeaderLen:l]); err != nil {
			return nil, fmt.Errorf("%v payload: %w", next, err)
		}
		following := PayloadType(b[0])
		b = b[l:]
		switch e := p.(type) {
		case *Encrypted:
			e.Inner = following
			following = PayloadNone
		case *EncryptedFragment:
			e.Inner = following
			following = PayloadNone
		}
		ps = append(ps, p)
		next = following
		if next == PayloadNone && len(b) != 0 {
			return nil, fmt.Errorf("%d bytes after last payload", len(b))
		}
	}
	if next == PayloadNone && len(b) != 0 && len(ps) == 0 {
		return nil, fmt.Errorf("%d bytes without payloads", len(b))
	}
	return ps, nil
}

func (t PayloadType) String() string {
	switch t {
	case PayloadNone:
		return "NONE"
	case PayloadSA:
		return "SA"
	case PayloadKE:
		return "KE"
	case PayloadIDi:
		return "IDi"
	case PayloadIDr:
		return "IDr"
	case PayloadCERT:
		return "CERT"
	case PayloadCERTREQ:
		return "CERTREQ"
	case PayloadAUTH:
		return "AUTH"
	case PayloadNonce:
		return "No"
	case PayloadNotify:
		return "N"
	case PayloadDelete:
		return "D"
	case PayloadVendorID:
		return "V"
	case PayloadTSi:
		return "TSi"
	case PayloadTSr:
		return "TSr"
	case PayloadSK:
		return "SK"
	case PayloadCP:
		return "CP"
	case PayloadEAP:
		return "EAP"
	case PayloadSKF:
		return "SKF"
	}
	return fmt.Sprintf("PAYLOAD(%d)", uint8(t))
}
