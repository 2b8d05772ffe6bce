package sig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	keys := []struct {
		name string
		gen  func() crypto.Signer
		want Scheme
	}{
		{"ed25519", func() crypto.Signer { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }, SchemeEd25519},
		{"p256", func() crypto.Signer { return mustEC(t, elliptic.P256()) }, SchemeECDSASHA256},
		// CNSA (RFC 9206): a P-384 key signs SHA-384, not SHA-256.
		{"p384", func() crypto.Signer { return mustEC(t, elliptic.P384()) }, SchemeECDSASHA384},
	}
	for _, tt := range keys {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.gen()
			octets := []byte("signed octets")
			a, err := Sign(key, octets)
			if err != nil {
				t.Fatal(err)
			}
			if a.Method != message.AuthDigitalSignature {
				t.Fatalf("method %d, want %d (RFC 7427)", a.Method, message.AuthDigitalSignature)
			}
			if got, err := SchemeOf(a); err != nil || got != tt.want {
				t.Fatalf("SchemeOf = %v, %v; want %v", got, err, tt.want)
			}
			if err := Verify(key.Public(), a, octets); err != nil {
				t.Fatalf("own signature: %v", err)
			}
			if err := Verify(key.Public(), a, []byte("other octets")); err == nil {
				t.Fatal("signature verified over other octets")
			}
			// No other key, of this type or another, accepts it.
			for _, other := range keys {
				if err := Verify(other.gen().Public(), a, octets); err == nil {
					t.Errorf("%s signature verified with another %s key", tt.name, other.name)
				}
			}
		})
	}
}

func TestSchemeForRefusesOtherCurves(t *testing.T) {
	if s, err := SchemeFor(mustEC(t, elliptic.P521())); err == nil {
		t.Fatalf("P-521 key: scheme %v, want an error", s)
	}
	if _, err := Sign(mustEC(t, elliptic.P224()), []byte("x")); err == nil {
		t.Fatal("signed with a P-224 key")
	}
}

// Peers may verify any hash RFC 7427 allows with a key, not only the one we
// pick for signing: a P-384 key's SHA-512 and SHA-256 signatures verify.
func TestVerifyOtherHashes(t *testing.T) {
	k := mustEC(t, elliptic.P384())
	octets := []byte("octets")
	for _, scheme := range []Scheme{SchemeECDSASHA256, SchemeECDSASHA384, SchemeECDSASHA512} {
		digest, _ := scheme.digest(octets)
		s, err := ecdsa.SignASN1(rand.Reader, k, digest)
		if err != nil {
			t.Fatal(err)
		}
		alg := algorithmIDs[scheme]
		a := &message.Auth{Method: message.AuthDigitalSignature, Data: append(append([]byte{byte(len(alg))}, alg...), s...)}
		if err := Verify(k.Public(), a, octets); err != nil {
			t.Errorf("%v: %v", scheme, err)
		}
		// The same signature labelled with another hash does not verify.
		other := SchemeECDSASHA512
		if scheme == SchemeECDSASHA512 {
			other = SchemeECDSASHA256
		}
		alg = algorithmIDs[other]
		a.Data = append(append([]byte{byte(len(alg))}, alg...), s...)
		if err := Verify(k.Public(), a, octets); err == nil {
			t.Errorf("%v signature verified as %v", scheme, other)
		}
	}
}

// RFC 4754 raw r|s encodings are still accepted from peers, each only with
// the curve its method names.
func TestVerifyRawECDSA(t *testing.T) {
	octets := []byte("octets")
	h256, h384 := sha256.Sum256(octets), sha512.Sum384(octets)
	for _, tt := range []struct {
		name   string
		method uint8
		curve  elliptic.Curve
		digest []byte
		other  elliptic.Curve
	}{
		{"ecdsa-256", message.AuthECDSA256, elliptic.P256(), h256[:], elliptic.P384()},
		{"ecdsa-384", message.AuthECDSA384, elliptic.P384(), h384[:], elliptic.P256()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := mustEC(t, tt.curve)
			size := (tt.curve.Params().BitSize + 7) / 8
			r, s, err := ecdsa.Sign(rand.Reader, k, tt.digest)
			if err != nil {
				t.Fatal(err)
			}
			raw := append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
			a := &message.Auth{Method: tt.method, Data: raw}
			if err := Verify(k.Public(), a, octets); err != nil {
				t.Fatal(err)
			}
			if err := Verify(mustEC(t, tt.other).Public(), a, octets); err == nil {
				t.Fatal("verified with a key of the other curve")
			}
			// A forged r = 1, mostly zero bytes, is refused.
			small := &message.Auth{Method: tt.method, Data: append(big.NewInt(1).FillBytes(make([]byte, size)), raw[size:]...)}
			if err := Verify(k.Public(), small, octets); err == nil {
				t.Fatal("forged r = 1 verified")
			}
			for _, n := range []int{0, 1, size, 2*size - 1, 2*size + 1} {
				if err := Verify(k.Public(), &message.Auth{Method: tt.method, Data: append(raw, 0)[:n]}, octets); err == nil {
					t.Errorf("%d-byte raw signature verified", n)
				}
			}
			raw[5] ^= 1
			if err := Verify(k.Public(), a, octets); err == nil {
				t.Fatal("tampered signature verified")
			}
		})
	}
}

// Every truncation of an RFC 7427 AUTH payload is refused.
func TestVerifyTruncated(t *testing.T) {
	k := mustEC(t, elliptic.P384())
	a, err := Sign(k, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(a.Data) {
		if err := Verify(k.Public(), &message.Auth{Method: a.Method, Data: a.Data[:n]}, []byte("x")); err == nil {
			t.Fatalf("AUTH truncated to %d of %d bytes verified", n, len(a.Data))
		}
	}
}

func FuzzVerify(f *testing.F) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ec := mustEC(f, elliptic.P384())
	for _, k := range []crypto.Signer{edKey, ec} {
		a, err := Sign(k, []byte("x"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(a.Method, a.Data)
	}
	f.Add(message.AuthECDSA384, make([]byte, 96))
	f.Fuzz(func(t *testing.T, method byte, data []byte) {
		a := &message.Auth{Method: method, Data: data}
		_, _ = SchemeOf(a)
		for _, pub := range []crypto.PublicKey{edKey.Public(), ec.Public()} {
			if Verify(pub, a, []byte("y")) == nil {
				t.Fatal("random data verified")
			}
		}
	})
}
