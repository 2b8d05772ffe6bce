package sk

import (
	"fmt"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// maxFragments bounds the fragments of one message (RFC 7383 leaves it to
// the implementation); with the 65535-byte message bound it is plenty.
const maxFragments = 128

// Reassembler collects the authenticated fragments of one message at a time.
// Only fragments that already verified under the SA's key reach it, so a
// third party cannot poison it.
type Reassembler struct {
	mid      uint32
	response bool
	total    uint16
	inner    message.PayloadType
	parts    map[uint16][]byte
	size     int
	active   bool
}

// Add records fragment f whose decrypted form is d. When the message is
// complete it returns it with its payloads parsed; otherwise nil.
func (r *Reassembler) Add(d *Decrypted, f *message.EncryptedFragment) (*Decrypted, error) {
	if f.Total > maxFragments {
		return nil, fmt.Errorf("fragment %d of %d: too many fragments", f.Number, f.Total)
	}
	same := r.active && r.mid == d.Header.MessageID && r.response == d.Header.IsResponse()
	switch {
	case !same:
		r.reset(d.Header, f.Total)
	case f.Total > r.total:
		// RFC 7383 2.6.2: a retransmission with more fragments supersedes.
		r.reset(d.Header, f.Total)
	case f.Total < r.total:
		return nil, nil
	}
	if _, dup := r.parts[f.Number]; dup {
		return nil, nil
	}
	if r.size+len(d.Plain) > message.MaxMessage {
		r.active = false
		return nil, fmt.Errorf("reassembled message exceeds %d bytes", message.MaxMessage)
	}
	r.parts[f.Number] = d.Plain
	r.size += len(d.Plain)
	if f.Number == 1 {
		r.inner = f.Inner
	}
	if len(r.parts) < int(r.total) {
		return nil, nil
	}
	plain := make([]byte, 0, r.size)
	for i := uint16(1); i <= r.total; i++ {
		plain = append(plain, r.parts[i]...)
	}
	r.active = false
	ps, err := message.ParsePayloads(r.inner, plain)
	if err != nil {
		return nil, fmt.Errorf("reassembled inner payloads: %w", err)
	}
	h := d.Header
	h.NextPayload = message.PayloadSK
	return &Decrypted{Header: h, Inner: r.inner, Plain: plain, Payloads: ps}, nil
}

func (r *Reassembler) reset(h message.Header, total uint16) {
	*r = Reassembler{mid: h.MessageID, response: h.IsResponse(), total: total, parts: map[uint16][]byte{}, active: true}
}
