package sk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// Sealed is a protected message ready to send. Inner and Plain describe it
// as if unfragmented, which is what IntAuth covers.
type Sealed struct {
	Datagrams [][]byte
	Inner     message.PayloadType
	Plain     []byte
}

// Seal encodes inner payloads under h and protects them with c. When maxLen
// is positive and the message would exceed it, it is split into SKF
// fragments of at most maxLen bytes each.
func Seal(h message.Header, inner []message.Payload, c *Cipher, maxLen int) (*Sealed, error) {
	first, plain, err := message.MarshalPayloads(nil, inner)
	if err != nil {
		return nil, err
	}
	s := &Sealed{Inner: first, Plain: plain}
	whole := message.HeaderLen + message.GenericHeaderLen + Overhead + len(plain)
	if maxLen <= 0 || whole <= maxLen {
		s.Datagrams = [][]byte{sealOne(h, message.PayloadSK, first, nil, plain, c)}
		return s, nil
	}
	chunk := maxLen - (message.HeaderLen + message.GenericHeaderLen + 4 + Overhead)
	if chunk < 64 {
		return nil, fmt.Errorf("fragment size %d leaves no room for data", maxLen)
	}
	total := (len(plain) + chunk - 1) / chunk
	if total > maxFragments {
		return nil, fmt.Errorf("message of %d bytes needs %d fragments", len(plain), total)
	}
	for i := 0; i < total; i++ {
		part := plain[i*chunk : min((i+1)*chunk, len(plain))]
		next := message.PayloadNone
		if i == 0 {
			next = first
		}
		num := binary.BigEndian.AppendUint16(nil, uint16(i+1))
		num = binary.BigEndian.AppendUint16(num, uint16(total))
		s.Datagrams = append(s.Datagrams, sealOne(h, message.PayloadSKF, next, num, part, c))
	}
	return s, nil
}

// sealOne builds header | generic header | extra | IV | ct | ICV, where the
// AAD is everything before the IV.
func sealOne(h message.Header, outer, next message.PayloadType, extra, plain []byte, c *Cipher) []byte {
	bodyLen := len(extra) + Overhead + len(plain)
	h.NextPayload = outer
	h.Length = uint32(message.HeaderLen + message.GenericHeaderLen + bodyLen)
	b := h.Marshal(make([]byte, 0, h.Length))
	b = append(b, byte(next), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(message.GenericHeaderLen+bodyLen))
	b = append(b, extra...)
	return append(b, c.seal(b, plain)...)
}

// Decrypted is an opened (and, if need be, reassembled) message.
type Decrypted struct {
	Header   message.Header
	Inner    message.PayloadType
	Plain    []byte
	Payloads []message.Payload
}

// ErrNotEncrypted reports a message without SK or SKF payload.
var ErrNotEncrypted = errors.New("message is not encrypted")

// Open authenticates and decrypts a parsed message whose raw bytes are raw.
// For an SKF fragment it returns the fragment's plaintext and a nil
// Payloads; pass it to a Reassembler.
func Open(raw []byte, m *message.Message, c *Cipher) (*Decrypted, *message.EncryptedFragment, error) {
	if len(m.Payloads) != 1 {
		return nil, nil, fmt.Errorf("%w: %d outer payloads", ErrNotEncrypted, len(m.Payloads))
	}
	switch p := m.Payloads[0].(type) {
	case *message.Encrypted:
		aad := raw[:len(raw)-len(p.Body)]
		plain, err := c.open(aad, p.Body)
		if err != nil {
			return nil, nil, err
		}
		ps, err := message.ParsePayloads(p.Inner, plain)
		if err != nil {
			return nil, nil, fmt.Errorf("inner payloads: %w", err)
		}
		return &Decrypted{Header: m.Header, Inner: p.Inner, Plain: plain, Payloads: ps}, nil, nil
	case *message.EncryptedFragment:
		aad := raw[:len(raw)-len(p.Body)]
		plain, err := c.open(aad, p.Body)
		if err != nil {
			return nil, nil, err
		}
		return &Decrypted{Header: m.Header, Inner: p.Inner, Plain: plain}, p, nil
	}
	return nil, nil, ErrNotEncrypted
}

// SealFragment seals one Encrypted Fragment payload (RFC 7383) carrying plain
// with whatever number and total the caller gives. Seal is how messages are
// fragmented; this is for tests that must send what a hostile peer could,
// e.g. a total beyond the reassembly limit, properly authenticated.
func SealFragment(h message.Header, next message.PayloadType, number, total uint16, plain []byte, c *Cipher) []byte {
	num := binary.BigEndian.AppendUint16(nil, number)
	num = binary.BigEndian.AppendUint16(num, total)
	return sealOne(h, message.PayloadSKF, next, num, plain, c)
}
