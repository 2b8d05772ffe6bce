package message

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
)

// Random-struct round trips and truncation checks, as crypto/tls does for its
// handshake messages (handshake_messages_test.go): every payload type the
// codec knows, with random field values, survives Marshal and Parse
// unchanged, and no strict prefix of an encoding parses.

// randBytes returns nil or 1..max random bytes: the codec reads an empty
// field back as nil.
func randBytes(r *rand.Rand, max int) []byte {
	n := r.IntN(max + 1)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var a [16]byte
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		return netip.AddrFrom16(a)
	}
	var a [4]byte
	for i := range a {
		a[i] = byte(r.Uint32())
	}
	return netip.AddrFrom4(a)
}

// randPayload returns a random payload of each kind the codec parses
// (SK and SKF, which end a chain, are covered by package sk).
func randPayload(r *rand.Rand) Payload {
	switch r.IntN(13) {
	case 0:
		sa := &SA{}
		for i := range 1 + r.IntN(3) {
			p := Proposal{Num: uint8(i + 1), Protocol: Protocol(1 + r.IntN(3)), SPI: randBytes(r, 8)}
			for range 1 + r.IntN(6) {
				t := Transform{Type: TransformType(1 + r.IntN(12)), ID: uint16(r.Uint32())}
				if r.IntN(2) == 0 {
					t.KeyLength = uint16(1 + r.IntN(0x7fff))
				}
				p.Transforms = append(p.Transforms, t)
			}
			sa.Proposals = append(sa.Proposals, p)
		}
		return sa
	case 1:
		return &KE{Group: uint16(r.Uint32()), Data: randBytes(r, 1600)}
	case 2:
		return &ID{Responder: r.IntN(2) == 0, IDType: uint8(r.Uint32()), Data: randBytes(r, 64)}
	case 3:
		return &Cert{Encoding: uint8(r.Uint32()), Data: randBytes(r, 300)}
	case 4:
		return &CertReq{Encoding: uint8(r.Uint32()), Data: randBytes(r, 60)}
	case 5:
		return &Auth{Method: uint8(r.Uint32()), Data: randBytes(r, 100)}
	case 6:
		n := &Nonce{Data: make([]byte, 16+r.IntN(241))}
		for i := range n.Data {
			n.Data[i] = byte(r.Uint32())
		}
		return n
	case 7:
		return &Notify{Protocol: Protocol(r.IntN(4)), SPI: randBytes(r, 8), NotifyType: NotifyType(r.Uint32()), Data: randBytes(r, 64)}
	case 8:
		d := &Delete{Protocol: Protocol(1 + r.IntN(3))}
		size := 1 + r.IntN(8)
		for range r.IntN(4) {
			spi := make([]byte, size)
			for i := range spi {
				spi[i] = byte(r.Uint32())
			}
			d.SPIs = append(d.SPIs, spi)
		}
		return d
	case 9:
		return &VendorID{Data: randBytes(r, 40)}
	case 10, 11:
		ts := &TS{Responder: r.IntN(2) == 0}
		for range 1 + r.IntN(4) {
			v6 := r.IntN(2) == 0
			ts.Selectors = append(ts.Selectors, Selector{IPProto: uint8(r.Uint32()), StartPort: uint16(r.Uint32()), EndPort: uint16(r.Uint32()),
				Start: randAddr(r, v6), End: randAddr(r, v6)})
		}
		return ts
	default:
		// A non-critical payload type the codec does not know.
		return &Unknown{T: PayloadType(60 + r.IntN(60)), Data: randBytes(r, 40)}
	}
}

func randMessage(r *rand.Rand) *Message {
	m := &Message{Header: Header{SPIi: r.Uint64(), SPIr: r.Uint64(), Exchange: ExchangeType(34 + r.IntN(10)),
		Flags: Flags(r.Uint32()) & (FlagInitiator | FlagResponse), MessageID: r.Uint32(), Version: Version}}
	for range r.IntN(6) {
		m.Payloads = append(m.Payloads, randPayload(r))
	}
	return m
}

func TestRandomMessageRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randMessage(r)
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("#%d: Marshal: %v", i, err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("#%d: Parse of %#v: %v", i, m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("#%d: round trip\n got %#v\nwant %#v", i, got, m)
		}
	}
}

// TestRandomMessageTruncated: no strict prefix of a message parses, even
// with the header's Length fixed up to match, and no strict prefix of a
// payload chain does.
func TestRandomMessageTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		m := randMessage(r)
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for j := range len(b) {
			c := append([]byte(nil), b[:j]...)
			if _, err := Parse(c); err == nil {
				t.Fatalf("#%d: Parse accepted %d of %d bytes", i, j, len(b))
			}
			if j >= HeaderLen {
				SetLength(c, j)
				if _, err := Parse(c); err == nil {
					t.Fatalf("#%d: Parse accepted %d of %d bytes with the length fixed up: %x", i, j, len(b), c)
				}
			}
		}
		if len(m.Payloads) == 0 {
			continue
		}
		first, chain, err := MarshalPayloads(nil, m.Payloads)
		if err != nil {
			t.Fatal(err)
		}
		for j := range len(chain) {
			if _, err := ParsePayloads(first, chain[:j]); err == nil {
				t.Fatalf("#%d: ParsePayloads accepted %d of %d bytes", i, j, len(chain))
			}
		}
	}
}
