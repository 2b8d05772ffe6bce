package sig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

func TestSignVerify(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, k := range []crypto.Signer{edKey, ecKey} {
		octets := []byte("signed octets")
		a, err := Sign(k, octets)
		if err != nil {
			t.Fatal(err)
		}
		if a.Method != message.AuthDigitalSignature {
			t.Fatalf("method %d", a.Method)
		}
		if err := Verify(k.Public(), a, octets); err != nil {
			t.Fatalf("%T: %v", k, err)
		}
		if err := Verify(k.Public(), a, []byte("other octets")); err == nil {
			t.Fatalf("%T: signature verified over other octets", k)
		}
	}
	// A signature made with one key type must not verify against another.
	a, _ := Sign(edKey, []byte("x"))
	if err := Verify(ecKey.Public(), a, []byte("x")); err == nil {
		t.Fatal("Ed25519 AUTH accepted for an ECDSA key")
	}
}

// RFC 4754 raw r|s encoding is still accepted from peers.
func TestVerifyRawECDSA(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	octets := []byte("octets")
	h := sha256.Sum256(octets)
	r, s, _ := ecdsa.Sign(rand.Reader, k, h[:])
	raw := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	if err := Verify(k.Public(), &message.Auth{Method: message.AuthECDSA256, Data: raw}, octets); err != nil {
		t.Fatal(err)
	}
	raw[5] ^= 1
	if err := Verify(k.Public(), &message.Auth{Method: message.AuthECDSA256, Data: raw}, octets); err == nil {
		t.Fatal("tampered signature verified")
	}
}

func FuzzVerify(f *testing.F) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	a, _ := Sign(edKey, []byte("x"))
	f.Add(a.Method, a.Data)
	f.Fuzz(func(t *testing.T, method byte, data []byte) {
		if Verify(edKey.Public(), &message.Auth{Method: method, Data: data}, []byte("y")) == nil {
			t.Fatal("random data verified")
		}
	})
}
