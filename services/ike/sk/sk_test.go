package sk

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

func pair(t testing.TB) (*Cipher, *Cipher) {
	key := bytes.Repeat([]byte{0x42}, 36)
	a, err := NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewCipher(key)
	return a, b
}

func innerPayloads(keLen int) []message.Payload {
	return []message.Payload{
		&message.KE{Group: message.KE_MLKEM1024, Data: bytes.Repeat([]byte{5}, keLen)},
		&message.Notify{NotifyType: message.ADDITIONAL_KEY_EXCHANGE, Data: []byte("link")},
	}
}

var hdr = message.Header{SPIi: 1, SPIr: 2, Exchange: message.IKE_INTERMEDIATE, Flags: message.FlagInitiator, MessageID: 1}

func openAll(t *testing.T, dgs [][]byte, c *Cipher) *Decrypted {
	t.Helper()
	var r Reassembler
	var out *Decrypted
	for i, dg := range dgs {
		m, err := message.Parse(dg)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		d, f, err := Open(dg, m, c)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if f == nil {
			return d
		}
		if out, err = r.Add(d, f); err != nil {
			t.Fatal(err)
		}
	}
	if out == nil {
		t.Fatal("reassembly incomplete")
	}
	return out
}

func TestSealOpen(t *testing.T) {
	tests := []struct {
		name      string
		keLen     int
		maxLen    int
		fragments int
	}{
		{"unfragmented", 1568, 0, 1},
		{"fits", 100, 1252, 1},
		{"mlkem1024 at 1280", 1568, 1280 - 28, 2},
		{"tiny fragments", 1568, 200, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, dec := pair(t)
			s, err := Seal(hdr, innerPayloads(tt.keLen), enc, tt.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Datagrams) != tt.fragments {
				t.Fatalf("%d datagrams, want %d", len(s.Datagrams), tt.fragments)
			}
			for _, dg := range s.Datagrams {
				if tt.maxLen > 0 && len(dg) > tt.maxLen {
					t.Fatalf("datagram of %d bytes exceeds %d", len(dg), tt.maxLen)
				}
			}
			// Deliver out of order: reassembly must not depend on it.
			dgs := append([][]byte(nil), s.Datagrams...)
			rand.Shuffle(len(dgs), func(i, j int) { dgs[i], dgs[j] = dgs[j], dgs[i] })
			d := openAll(t, dgs, dec)
			if !reflect.DeepEqual(d.Payloads, innerPayloads(tt.keLen)) {
				t.Fatal("payloads differ after round trip")
			}
			if !bytes.Equal(d.Plain, s.Plain) || d.Inner != s.Inner {
				t.Fatal("IntAuth view differs between sender and receiver")
			}
		})
	}
}

func TestOpenRejectsTampering(t *testing.T) {
	enc, dec := pair(t)
	s, _ := Seal(hdr, innerPayloads(32), enc, 0)
	dg := s.Datagrams[0]
	for _, off := range []int{5, 20, 30, 40, len(dg) - 1} { // SPI, MID, SK header, ciphertext, ICV
		bad := append([]byte(nil), dg...)
		bad[off] ^= 0x80
		m, err := message.Parse(bad)
		if err != nil {
			continue // the codec already refuses it
		}
		if _, _, err := Open(bad, m, dec); !errors.Is(err, ErrAuth) {
			t.Errorf("flip at %d: err = %v, want ErrAuth", off, err)
		}
	}
	other, _ := NewCipher(bytes.Repeat([]byte{1}, 36))
	m, _ := message.Parse(dg)
	if _, _, err := Open(dg, m, other); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong key: err = %v", err)
	}
}

func TestReassemblerEdgeCases(t *testing.T) {
	enc, dec := pair(t)
	s, _ := Seal(hdr, innerPayloads(1568), enc, 400)
	var r Reassembler
	add := func(dg []byte) (*Decrypted, error) {
		m, err := message.Parse(dg)
		if err != nil {
			t.Fatal(err)
		}
		d, f, err := Open(dg, m, dec)
		if err != nil {
			t.Fatal(err)
		}
		return r.Add(d, f)
	}
	// Duplicates are ignored; the message completes exactly once.
	for i, dg := range s.Datagrams {
		for range 3 {
			got, err := add(dg)
			if err != nil {
				t.Fatal(err)
			}
			if (got != nil) != (i == len(s.Datagrams)-1) {
				t.Fatalf("fragment %d: completion = %v", i+1, got != nil)
			}
			if got != nil {
				break
			}
		}
	}
	if _, err := r.Add(&Decrypted{Header: hdr}, &message.EncryptedFragment{Number: 1, Total: 1000}); err == nil {
		t.Error("1000 fragments accepted")
	}
}

// FuzzOpen feeds arbitrary datagrams through the receive path: parse, then
// authenticate/decrypt, then reassemble. It must never panic, and anything
// that authenticates must be what was sealed.
func FuzzOpen(f *testing.F) {
	enc, _ := pair(f)
	s, _ := Seal(hdr, innerPayloads(1568), enc, 500)
	for _, dg := range s.Datagrams {
		f.Add(dg)
	}
	whole, _ := Seal(hdr, innerPayloads(32), enc, 0)
	f.Add(whole.Datagrams[0])
	f.Fuzz(func(t *testing.T, dg []byte) {
		_, dec := pair(t)
		m, err := message.Parse(dg)
		if err != nil {
			return
		}
		d, frag, err := Open(dg, m, dec)
		if err != nil {
			return
		}
		if frag != nil {
			var r Reassembler
			_, _ = r.Add(d, frag)
		}
	})
}

// FuzzReassemble feeds forged (already "authenticated") fragment sequences.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{1, 2, 2, 2, 1, 1})
	f.Fuzz(func(t *testing.T, script []byte) {
		var r Reassembler
		for i := 0; i+2 < len(script); i += 3 {
			d := &Decrypted{Header: message.Header{MessageID: uint32(script[i] & 1)}, Plain: bytes.Repeat([]byte{byte(i)}, int(script[i+2]))}
			fr := &message.EncryptedFragment{Number: uint16(script[i+1] % 5), Total: uint16(script[i+2] % 5), Inner: message.PayloadNotify}
			if fr.Number == 0 || fr.Total == 0 || fr.Number > fr.Total {
				continue // the codec never yields these
			}
			_, _ = r.Add(d, fr)
		}
	})
}
