// Package keys is the IKEv2 key schedule: the PRF and prf+ (RFC 7296 2.13),
// SKEYSEED and the SK_* keys (2.14), their updates after each additional key
// exchange (RFC 9370), Child SA KEYMAT (2.17), the IntAuth chain (RFC 9242)
// and the AUTH payload's signed octets (2.15).
package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// PRF is a negotiated pseudo-random function (HMAC-SHA2 only).
type PRF struct {
	ID   uint16
	Name string
	h    func() hash.Hash
}

// PRFByID returns the PRF for a Transform ID.
func PRFByID(id uint16) (PRF, error) {
	switch id {
	case message.PRF_HMAC_SHA2_256:
		return PRF{id, "prfsha256", sha256.New}, nil
	case message.PRF_HMAC_SHA2_384:
		return PRF{id, "prfsha384", sha512.New384}, nil
	case message.PRF_HMAC_SHA2_512:
		return PRF{id, "prfsha512", sha512.New}, nil
	}
	return PRF{}, fmt.Errorf("PRF %d not supported", id)
}

// Size is the output length, which is also the preferred key length of
// SK_d, SK_pi and SK_pr.
func (p PRF) Size() int { return p.h().Size() }

// Sum is prf(key, data[0] | data[1] | ...).
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.h, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// Plus is prf+(key, seed) truncated to n bytes:
// T1 = prf(K, S | 0x01), Tk = prf(K, Tk-1 | S | k).
func (p PRF) Plus(key, seed []byte, n int) []byte {
	if n > 255*p.Size() {
		panic("keys: prf+ output longer than 255 blocks") // a programming error, never peer-controlled
	}
	// One HMAC, reset for each block, keyed (its pads hashed) once.
	m := hmac.New(p.h, key)
	out := make([]byte, 0, n+m.Size())
	var t []byte
	for i := byte(1); len(out) < n; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{i})
		out = m.Sum(out)
		t = out[len(out)-m.Size():]
	}
	return out[:n]
}
