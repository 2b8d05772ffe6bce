package message

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the size of the fixed IKE header.
const HeaderLen = 28

// Version is IKEv2's major/minor version byte.
const Version = 0x20

// Header is the fixed IKE header.
type Header struct {
	SPIi, SPIr  uint64
	NextPayload PayloadType
	Version     uint8
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// IsResponse reports whether the Response flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the message comes from the original initiator.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// Marshal appends the header to b.
func (h *Header) Marshal(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(h.NextPayload), v, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

var (
	errShort   = errors.New("message truncated")
	errVersion = errors.New("not an IKEv2 message")
)

// ParseHeader decodes the fixed header at the start of b. It checks the
// version and that Length covers at least the header, not that it matches
// len(b): fragments and datagrams are checked by their callers.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("header: %w (%d bytes)", errShort, len(b))
	}
	h := Header{
		SPIi:        binary.BigEndian.Uint64(b[0:]),
		SPIr:        binary.BigEndian.Uint64(b[8:]),
		NextPayload: PayloadType(b[16]),
		Version:     b[17],
		Exchange:    ExchangeType(b[18]),
		Flags:       Flags(b[19]),
		MessageID:   binary.BigEndian.Uint32(b[20:]),
		Length:      binary.BigEndian.Uint32(b[24:]),
	}
	if h.Version>>4 != 2 {
		return Header{}, fmt.Errorf("header: %w (version %#x)", errVersion, h.Version)
	}
	if h.Length < HeaderLen {
		return Header{}, fmt.Errorf("header: length %d below header size", h.Length)
	}
	return h, nil
}
