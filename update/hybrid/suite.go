package hybrid

import (
	"crypto/ed25519"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Suite names one composite signature algorithm: a post-quantum half and a
// traditional half, and the label that domain-separates them. Manifests and
// key files carry the suite by name, so a new suite (e.g. ML-DSA-87 for
// CNSA 2.0) is a new name, never a new file format.
type Suite string

// MLDSA65Ed25519 is id-MLDSA65-Ed25519-SHA512 of
// draft-ietf-lamps-pq-composite-sigs.
const MLDSA65Ed25519 Suite = "mldsa65-ed25519"

// String returns the suite's name.
func (s Suite) String() string { return string(s) }

// Label is the suite's domain separator: it is both part of M' and the
// ML-DSA context string.
func (s Suite) Label() (string, error) {
	p, err := s.params()
	if err != nil {
		return "", err
	}
	return p.label, nil
}

// SignatureSize is the length of a composite signature of this suite.
func (s Suite) SignatureSize() (int, error) {
	p, err := s.params()
	if err != nil {
		return 0, err
	}
	return p.pq.sigSize + p.trad.sigSize, nil
}

// Suites lists the suites this build knows, for error messages and tests.
func Suites() []Suite { return []Suite{MLDSA65Ed25519} }

// component is one half of a composite: the sizes the parsers check and the
// three operations the composite needs. Each half works on its own seed, so
// a private key file is two seeds whatever the algorithms are.
type component struct {
	name     string // "ML-DSA-65": names the half in errors
	seedSize int
	pubSize  int
	sigSize  int
	// derive expands a seed into the public key bytes and a signing
	// function over M'.
	derive func(seed []byte) (pub []byte, sign func(m []byte) ([]byte, error))
	// verify reports whether sig is this half's signature of M' under pub.
	verify func(pub, m, sig []byte) bool
}

// suiteParams is everything that differs between suites.
type suiteParams struct {
	label string
	pq    component
	trad  component
}

// params is the extension point for new suites: add a constant above and a
// case here (an ML-DSA-87 suite would use circl's mldsa87 with its own label
// and traditional half). PublicKey's fields are named after today's halves;
// a suite whose traditional half is not Ed25519 would add its own field.
func (s Suite) params() (suiteParams, error) {
	switch s {
	case MLDSA65Ed25519:
		const label = "COMPSIG-MLDSA65-Ed25519-SHA512"
		return suiteParams{label: label, pq: mldsa65Component([]byte(label)), trad: ed25519Component()}, nil
	}
	return suiteParams{}, fmt.Errorf("%w: %q; expected one of %q", ErrUnknownSuite, string(s), Suites())
}

// mldsa65Component is ML-DSA-65 with the suite's label as context string,
// as the draft requires (ctx = Label keeps an ML-DSA signature lifted out of
// a composite from verifying as a plain ML-DSA-65 signature of M').
func mldsa65Component(ctx []byte) component {
	return component{
		name:     "ML-DSA-65",
		seedSize: mldsa65.SeedSize,
		pubSize:  mldsa65.PublicKeySize,
		sigSize:  mldsa65.SignatureSize,
		derive: func(seed []byte) ([]byte, func([]byte) ([]byte, error)) {
			pk, sk := mldsa65.NewKeyFromSeed((*[mldsa65.SeedSize]byte)(seed))
			sign := func(m []byte) ([]byte, error) {
				sig := make([]byte, mldsa65.SignatureSize)
				// Hedged signing (randomized = true), the FIPS 204 default:
				// it resists fault attacks on the signer.
				if err := mldsa65.SignTo(sk, m, ctx, true, sig); err != nil {
					return nil, err
				}
				return sig, nil
			}
			return pk.Bytes(), sign
		},
		verify: func(pub, m, sig []byte) bool {
			var pk mldsa65.PublicKey
			if pk.UnmarshalBinary(pub) != nil {
				return false
			}
			return mldsa65.Verify(&pk, m, ctx, sig)
		},
	}
}

// ed25519Component is pure Ed25519 (RFC 8032) over M'.
func ed25519Component() component {
	return component{
		name:     "Ed25519",
		seedSize: ed25519.SeedSize,
		pubSize:  ed25519.PublicKeySize,
		sigSize:  ed25519.SignatureSize,
		derive: func(seed []byte) ([]byte, func([]byte) ([]byte, error)) {
			sk := ed25519.NewKeyFromSeed(seed)
			sign := func(m []byte) ([]byte, error) { return ed25519.Sign(sk, m), nil }
			return []byte(sk.Public().(ed25519.PublicKey)), sign
		},
		verify: func(pub, m, sig []byte) bool {
			return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, m, sig)
		},
	}
}
