package message

import (
	"encoding/binary"
	"fmt"
)

// MaxMessage bounds the size of any message or reassembled message we accept.
const MaxMessage = 65535

// Message is a whole IKE message: the header and its outer payload chain.
// In an encrypted exchange the chain ends with an SK or SKF payload.
type Message struct {
	Header
	Payloads []Payload
}

// Marshal encodes m, filling in the header's Next Payload and Length.
func (m *Message) Marshal() ([]byte, error) {
	first, b, err := MarshalPayloads(make([]byte, HeaderLen, 512), m.Payloads)
	if err != nil {
		return nil, err
	}
	m.NextPayload, m.Length = first, uint32(len(b))
	if m.Version == 0 {
		m.Version = Version
	}
	m.Header.Marshal(b[:0])
	return b, nil
}

// Parse decodes a whole message; its Length must match the datagram.
func Parse(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if int(h.Length) != len(b) {
		return nil, fmt.Errorf("header length %d, datagram %d bytes", h.Length, len(b))
	}
	ps, err := ParsePayloads(h.NextPayload, b[HeaderLen:])
	if err != nil {
		return nil, fmt.Errorf("%v: %w", h.Exchange, err)
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// SetLength rewrites the Length field of an encoded header in place.
func SetLength(b []byte, n int) { binary.BigEndian.PutUint32(b[24:], uint32(n)) }

// Find returns the first payload of type T in ps.
func Find[T Payload](ps []Payload) T {
	for _, p := range ps {
		if t, ok := p.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// FindAll returns every payload of type T in ps.
func FindAll[T Payload](ps []Payload) []T {
	var out []T
	for _, p := range ps {
		if t, ok := p.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// FindNotify returns the first notify of type t.
func FindNotify(ps []Payload, t NotifyType) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

// FirstError returns the first error notify in ps, or nil.
func FirstError(ps []Payload) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType.IsError() {
			return n
		}
	}
	return nil
}

// FindID returns the IDi (responder=false) or IDr payload.
func FindID(ps []Payload, responder bool) *ID {
	for _, p := range ps {
		if id, ok := p.(*ID); ok && id.Responder == responder {
			return id
		}
	}
	return nil
}

// FindTS returns the TSi (responder=false) or TSr payload.
func FindTS(ps []Payload, responder bool) *TS {
	for _, p := range ps {
		if ts, ok := p.(*TS); ok && ts.Responder == responder {
			return ts
		}
	}
	return nil
}

// Summary lists payload types the way strongSwan logs them, e.g. "[ SA KE No N(NATD_S_IP) ]".
func Summary(ps []Payload) string {
	s := "["
	for _, p := range ps {
		s += " " + p.Type().String()
		if n, ok := p.(*Notify); ok {
			s += "(" + n.NotifyType.String() + ")"
		}
		if f, ok := p.(*EncryptedFragment); ok {
			s += fmt.Sprintf("(%d/%d)", f.Number, f.Total)
		}
	}
	return s + " ]"
}
