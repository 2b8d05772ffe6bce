package hybrid

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// seeded is a deterministic randomness source for key generation in tests.
func seeded(n uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(n)
	s[1] = byte(n >> 8)
	return rand.NewChaCha8(s)
}

func testKey(t testing.TB, n uint64) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(MLDSA65Ed25519, seeded(n))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	k := testKey(t, 1)
	for _, msg := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xa5}, 100000)} {
		sig, err := k.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) != 3309+64 { // the draft's sizes, not circl's constants
			t.Fatalf("signature is %d bytes; want 3373", len(sig))
		}
		if err := k.Public().Verify(msg, sig); err != nil {
			t.Fatalf("Verify(%d-byte msg): %v", len(msg), err)
		}
	}
}

func TestGenerateKeyDeterministic(t *testing.T) {
	a, b, c := testKey(t, 7), testKey(t, 7), testKey(t, 8)
	if !a.Public().Equal(b.Public()) {
		t.Error("same rand bytes gave different keys")
	}
	if a.Public().Equal(c.Public()) {
		t.Error("different rand bytes gave the same key")
	}
	if _, err := GenerateKey(MLDSA65Ed25519, bytes.NewReader(make([]byte, 63))); err == nil {
		t.Error("GenerateKey with 63 bytes of randomness succeeded; want an error")
	}
	if _, err := GenerateKey("mldsa87-ed448", seeded(1)); !errors.Is(err, ErrUnknownSuite) {
		t.Errorf("GenerateKey(unknown suite) = %v; want ErrUnknownSuite", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	k := testKey(t, 1)
	msg := []byte("bundle header")
	sig, err := k.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		s := bytes.Clone(sig)
		s[i] ^= 1
		return s
	}
	const pq = mldsa65.SignatureSize
	tests := []struct {
		name    string
		pub     PublicKey
		msg     []byte
		sig     []byte
		want    []error
		notWant []error
	}{
		{"ML-DSA half tampered", k.Public(), msg, flip(100), []error{ErrMLDSA}, []error{ErrEd25519}},
		{"ML-DSA half last byte tampered", k.Public(), msg, flip(pq - 1), []error{ErrMLDSA}, []error{ErrEd25519}},
		{"Ed25519 half tampered", k.Public(), msg, flip(pq + 3), []error{ErrEd25519}, []error{ErrMLDSA}},
		{"other message", k.Public(), []byte("bundle headeR"), sig, []error{ErrMLDSA, ErrEd25519}, nil},
		{"wrong key", testKey(t, 2).Public(), msg, sig, []error{ErrMLDSA, ErrEd25519}, nil},
		{"Ed25519 half stripped", k.Public(), msg, sig[:pq], []error{ErrSignatureLength}, []error{ErrMLDSA, ErrEd25519}},
		{"ML-DSA half stripped", k.Public(), msg, sig[pq:], []error{ErrSignatureLength}, []error{ErrMLDSA, ErrEd25519}},
		{"truncated by one byte", k.Public(), msg, sig[:len(sig)-1], []error{ErrSignatureLength}, nil},
		{"one byte appended", k.Public(), msg, append(bytes.Clone(sig), 0), []error{ErrSignatureLength}, nil},
		{"empty", k.Public(), msg, nil, []error{ErrSignatureLength}, nil},
		{"short ML-DSA key", PublicKey{Suite: MLDSA65Ed25519, MLDSA: k.Public().MLDSA[1:], Ed25519: k.Public().Ed25519}, msg, sig, []error{ErrPublicKey}, nil},
		{"unknown suite", PublicKey{Suite: "rsa", MLDSA: k.Public().MLDSA, Ed25519: k.Public().Ed25519}, msg, sig, []error{ErrUnknownSuite}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pub.Verify(tt.msg, tt.sig)
			if err == nil {
				t.Fatal("Verify succeeded; want an error")
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q is not %v", err, w)
				}
			}
			for _, w := range tt.notWant {
				if errors.Is(err, w) {
					t.Errorf("error %q claims %v", err, w)
				}
			}
		})
	}
}

// TestKnownAnswerConstruction checks the composite against the draft's
// construction with the component libraries directly, so the two halves
// are what draft-ietf-lamps-pq-composite-sigs says and not merely
// consistent with our own Verify.
func TestKnownAnswerConstruction(t *testing.T) {
	// The draft gives the prefix in hex.
	prefixHex := "436f6d706f73697465416c676f726974686d5369676e61747572657332303235"
	if got := hex.EncodeToString([]byte("CompositeAlgorithmSignatures2025")); got != prefixHex {
		t.Fatalf("prefix hex %s; want %s", got, prefixHex)
	}
	label := []byte("COMPSIG-MLDSA65-Ed25519-SHA512")
	if l, _ := MLDSA65Ed25519.Label(); l != string(label) {
		t.Fatalf("Label() = %q; want %q", l, label)
	}

	// Key generation: the seeds expand with the plain FIPS 204 and RFC 8032 key generation.
	seeds := make([]byte, 64)
	seeded(3).Read(seeds)
	k, err := GenerateKey(MLDSA65Ed25519, bytes.NewReader(seeds))
	if err != nil {
		t.Fatal(err)
	}
	wantPQ, _ := mldsa65.NewKeyFromSeed((*[32]byte)(seeds[:32]))
	wantEd := ed25519.NewKeyFromSeed(seeds[32:]).Public().(ed25519.PublicKey)
	if !bytes.Equal(k.Public().MLDSA, wantPQ.Bytes()) || !bytes.Equal(k.Public().Ed25519, wantEd) {
		t.Fatal("public keys are not the component keys of the two seeds")
	}
	wantID := sha256.Sum256(append(append([]byte("mldsa65-ed25519"), wantPQ.Bytes()...), wantEd...))
	if got := k.Public().ID(); got != hex.EncodeToString(wantID[:8]) || len(got) != 16 {
		t.Fatalf("ID() = %s; want %x", got, wantID[:8])
	}

	msg := []byte("the signed bundle header")
	sig, err := k.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	// M' = Prefix || Label || len(ctx) || ctx || SHA-512(M), ctx empty, built by hand.
	ph := sha512.Sum512(msg)
	var mp []byte
	mp = append(mp, "CompositeAlgorithmSignatures2025"...)
	mp = append(mp, label...)
	mp = append(mp, 0)
	mp = append(mp, ph[:]...)

	pqSig, edSig := sig[:3309], sig[3309:]
	if !mldsa65.Verify(wantPQ, mp, label, pqSig) {
		t.Error("ML-DSA half does not verify over M' with ctx = Label")
	}
	if mldsa65.Verify(wantPQ, mp, nil, pqSig) {
		t.Error("ML-DSA half verifies with an empty context: the label is not used as ctx")
	}
	if mldsa65.Verify(wantPQ, msg, label, pqSig) {
		t.Error("ML-DSA half verifies over M itself instead of M'")
	}
	if !ed25519.Verify(wantEd, mp, edSig) {
		t.Error("Ed25519 half does not verify over M'")
	}
}

func TestKeyringVerify(t *testing.T) {
	k1, k2, k3 := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	ring := Keyring{Keys: []TrustedKey{
		{PublicKey: k1.Public(), Name: "release-2026"},
		{PublicKey: k2.Public(), Name: "dev", Dev: true},
	}}
	msg := []byte("m")
	for _, k := range []*PrivateKey{k1, k2} {
		sig, _ := k.Sign(msg)
		got, err := ring.Verify(k.Public().ID(), msg, sig)
		if err != nil {
			t.Fatalf("Verify with %s: %v", k.Public().ID(), err)
		}
		if !got.PublicKey.Equal(k.Public()) {
			t.Errorf("Verify returned key %s; want %s", got.ID(), k.Public().ID())
		}
	}
	if got, _ := ring.Lookup(k2.Public().ID()); !got.Dev || got.Name != "dev" {
		t.Errorf("Lookup(dev key) = %+v", got)
	}

	sig3, _ := k3.Sign(msg)
	_, err := ring.Verify(k3.Public().ID(), msg, sig3)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), k3.Public().ID()) {
		t.Errorf("unknown key: err = %v; want ErrUnknownKey naming %s", err, k3.Public().ID())
	}
	// A signature by k3 presented under k1's id fails on both halves.
	_, err = ring.Verify(k1.Public().ID(), msg, sig3)
	if !errors.Is(err, ErrMLDSA) || !errors.Is(err, ErrEd25519) || !strings.Contains(err.Error(), "release-2026") {
		t.Errorf("wrong key: err = %v; want both halves failed, naming the key", err)
	}
}
