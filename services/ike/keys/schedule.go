package keys

import (
	"encoding/binary"
)

// IKE holds the keys of an IKE SA. For AEAD ciphers the integrity keys are
// empty and each encryption key carries its salt at the end.
type IKE struct {
	D, Ai, Ar, Ei, Er, Pi, Pr []byte
}

// Lengths of the SK_* keys for a suite: encKey includes the AEAD salt.
type Lengths struct {
	Integ, Enc int
}

func spis(spii, spir uint64) []byte {
	b := binary.BigEndian.AppendUint64(nil, spii)
	return binary.BigEndian.AppendUint64(b, spir)
}

// SKEYSEED computes prf(Ni | Nr, g^ir) for IKE_SA_INIT.
func SKEYSEED(p PRF, ni, nr, shared []byte) []byte {
	return p.Sum(append(append([]byte(nil), ni...), nr...), shared)
}

// SKEYSEEDNext is the update after additional key exchange n (RFC 9370 2.2.2):
// prf(SK_d(n-1), SK(n) | Ni | Nr).
func SKEYSEEDNext(p PRF, prevD, shared, ni, nr []byte) []byte {
	return p.Sum(prevD, shared, ni, nr)
}

// SKEYSEEDRekey is the IKE SA rekey seed, computed with the old SA's PRF:
// prf(SK_d(old), SK(0) | Ni | Nr | SK(1) | ... | SK(n)) (RFC 7296 2.18, RFC 9370 2.2.4).
func SKEYSEEDRekey(oldPRF PRF, oldD []byte, shared [][]byte, ni, nr []byte) []byte {
	return oldPRF.Sum(oldD, rekeyMaterial(shared, ni, nr)...)
}

// Derive splits prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) into the SK_* keys.
func Derive(p PRF, skeyseed, ni, nr []byte, spii, spir uint64, l Lengths) IKE {
	seed := append(append(append([]byte(nil), ni...), nr...), spis(spii, spir)...)
	n := p.Size()
	km := p.Plus(skeyseed, seed, 3*n+2*l.Integ+2*l.Enc)
	take := func(k int) []byte {
		b := km[:k:k]
		km = km[k:]
		return b
	}
	var k IKE
	k.D = take(n)
	k.Ai, k.Ar = take(l.Integ), take(l.Integ)
	k.Ei, k.Er = take(l.Enc), take(l.Enc)
	k.Pi, k.Pr = take(n), take(n)
	return k
}

// ChildKeymat is KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ...) for a
// Child SA; with no key exchanges it is prf+(SK_d, Ni | Nr).
func ChildKeymat(p PRF, d []byte, shared [][]byte, ni, nr []byte, n int) []byte {
	var seed []byte
	for _, part := range rekeyMaterial(shared, ni, nr) {
		seed = append(seed, part...)
	}
	return p.Plus(d, seed, n)
}

func rekeyMaterial(shared [][]byte, ni, nr []byte) [][]byte {
	if len(shared) == 0 {
		return [][]byte{ni, nr}
	}
	parts := [][]byte{shared[0], ni, nr}
	return append(parts, shared[1:]...)
}

// Wipe overwrites every key with zeros, best effort: copies the runtime
// made (or the AEAD's expanded key schedule) are out of reach.
func (k *IKE) Wipe() {
	for _, b := range [][]byte{k.D, k.Ai, k.Ar, k.Ei, k.Er, k.Pi, k.Pr} {
		clear(b)
	}
}

// WipeAll zeroes each secret in bs, e.g. the shared secrets of a key exchange
// once the keys are derived from them.
func WipeAll(bs ...[]byte) {
	for _, b := range bs {
		clear(b)
	}
}
