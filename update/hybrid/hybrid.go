// Package hybrid implements the composite ML-DSA + Ed25519 signatures of
// draft-ietf-lamps-pq-composite-sigs that sign update bundles and update
// metadata, their keys, key files and key rings.
//
// A composite signature is an AND: it verifies only when both halves do, so
// a forger must break ML-DSA and Ed25519. Both halves sign the same message
// representative
//
//	M' = "CompositeAlgorithmSignatures2025" || Label || len(ctx) || ctx || SHA-512(M)
//
// with ctx empty (we have no application context) and the ML-DSA half using
// Label as its FIPS 204 context string. The signature is the ML-DSA signature
// followed by the Ed25519 one.
package hybrid

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Errors, for errors.Is. Each is wrapped with the detail.
var (
	ErrUnknownSuite = errors.New("unknown signature suite")
	// ErrSignatureLength: the signature is not exactly one ML-DSA signature
	// followed by one Ed25519 signature (e.g. a half was stripped).
	ErrSignatureLength = errors.New("composite signature has the wrong length")
	ErrMLDSA           = errors.New("ML-DSA half of the composite signature does not verify")
	ErrEd25519         = errors.New("Ed25519 half of the composite signature does not verify")
	ErrPublicKey       = errors.New("malformed public key")
	ErrUnknownKey      = errors.New("unknown key id")
)

// prefix is the draft's fixed prefix of M'.
const prefix = "CompositeAlgorithmSignatures2025"

// PublicKey is a composite public key: the raw public keys of both halves.
type PublicKey struct {
	Suite   Suite
	MLDSA   []byte // FIPS 204 encoded public key
	Ed25519 []byte // RFC 8032 public key
}

// PrivateKey is a composite private key. It is kept as the two seeds (what
// the key file stores) plus the expanded signers.
type PrivateKey struct {
	suite               Suite
	mldsaSeed, edSeed   []byte
	signPQ, signClassic func(m []byte) ([]byte, error)
	pub                 PublicKey
}

// GenerateKey draws both seeds from rand (ML-DSA seed first, then the
// Ed25519 seed): the key is a deterministic function of rand's bytes.
func GenerateKey(s Suite, rand io.Reader) (*PrivateKey, error) {
	p, err := s.params()
	if err != nil {
		return nil, err
	}
	seeds := make([]byte, p.pq.seedSize+p.trad.seedSize)
	if _, err := io.ReadFull(rand, seeds); err != nil {
		return nil, fmt.Errorf("hybrid: generating %s key: reading seeds: %w", s, err)
	}
	return NewKeyFromSeeds(s, seeds[:p.pq.seedSize], seeds[p.pq.seedSize:])
}

// NewKeyFromSeeds expands the two seeds into a key.
func NewKeyFromSeeds(s Suite, mldsaSeed, edSeed []byte) (*PrivateKey, error) {
	p, err := s.params()
	if err != nil {
		return nil, err
	}
	if len(mldsaSeed) != p.pq.seedSize {
		return nil, fmt.Errorf("hybrid: %s seed is %d bytes; expected %d", p.pq.name, len(mldsaSeed), p.pq.seedSize)
	}
	if len(edSeed) != p.trad.seedSize {
		return nil, fmt.Errorf("hybrid: %s seed is %d bytes; expected %d", p.trad.name, len(edSeed), p.trad.seedSize)
	}
	k := &PrivateKey{
		suite:     s,
		mldsaSeed: append([]byte(nil), mldsaSeed...),
		edSeed:    append([]byte(nil), edSeed...),
	}
	k.pub.Suite = s
	k.pub.MLDSA, k.signPQ = p.pq.derive(k.mldsaSeed)
	k.pub.Ed25519, k.signClassic = p.trad.derive(k.edSeed)
	return k, nil
}

// Suite returns the key's suite.
func (k *PrivateKey) Suite() Suite { return k.suite }

// Public returns the key's public half.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// Sign returns the composite signature of msg.
func (k *PrivateKey) Sign(msg []byte) ([]byte, error) {
	p, err := k.suite.params()
	if err != nil {
		return nil, err
	}
	m := messageRepresentative(p.label, msg)
	pq, err := k.signPQ(m)
	if err != nil {
		return nil, fmt.Errorf("hybrid: %s sign: %w", p.pq.name, err)
	}
	classic, err := k.signClassic(m)
	if err != nil {
		return nil, fmt.Errorf("hybrid: %s sign: %w", p.trad.name, err)
	}
	return append(pq, classic...), nil
}

// messageRepresentative is the draft's M' with an empty ctx.
func messageRepresentative(label string, msg []byte) []byte {
	h := sha512.Sum512(msg)
	m := make([]byte, 0, len(prefix)+len(label)+1+len(h))
	m = append(m, prefix...)
	m = append(m, label...)
	m = append(m, 0) // len(ctx): we sign with the empty context
	return append(m, h[:]...)
}

// Verify checks a composite signature of msg. Both halves are always
// checked, so the error names every half that failed.
func (p PublicKey) Verify(msg, sig []byte) error {
	sp, err := p.Suite.params()
	if err != nil {
		return fmt.Errorf("hybrid: %w", err)
	}
	if err := p.check(sp); err != nil {
		return fmt.Errorf("hybrid: key %s: %w", p.ID(), err)
	}
	if want := sp.pq.sigSize + sp.trad.sigSize; len(sig) != want {
		return fmt.Errorf("hybrid: key %s: %w: is %d bytes; expected %d (%s %d + %s %d)", p.ID(),
			ErrSignatureLength, len(sig), want, sp.pq.name, sp.pq.sigSize, sp.trad.name, sp.trad.sigSize)
	}
	m := messageRepresentative(sp.label, msg)
	var errs []error
	if !sp.pq.verify(p.MLDSA, m, sig[:sp.pq.sigSize]) {
		errs = append(errs, ErrMLDSA)
	}
	if !sp.trad.verify(p.Ed25519, m, sig[sp.pq.sigSize:]) {
		errs = append(errs, ErrEd25519)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hybrid: key %s: %w", p.ID(), err)
	}
	return nil
}

// check validates the key's lengths against its suite.
func (p PublicKey) check(sp suiteParams) error {
	if len(p.MLDSA) != sp.pq.pubSize {
		return fmt.Errorf("%w: %s key is %d bytes; expected %d", ErrPublicKey, sp.pq.name, len(p.MLDSA), sp.pq.pubSize)
	}
	if len(p.Ed25519) != sp.trad.pubSize {
		return fmt.Errorf("%w: %s key is %d bytes; expected %d", ErrPublicKey, sp.trad.name, len(p.Ed25519), sp.trad.pubSize)
	}
	return nil
}

// ID is the key's identifier: the hex of the first 8 bytes of
// SHA-256(suite || mldsa || ed25519). The suite fixes both key lengths, so
// the concatenation is unambiguous.
func (p PublicKey) ID() string {
	h := sha256.New()
	h.Write([]byte(p.Suite))
	h.Write(p.MLDSA)
	h.Write(p.Ed25519)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Equal reports whether two public keys are the same key.
func (p PublicKey) Equal(q PublicKey) bool {
	return p.Suite == q.Suite && subtle.ConstantTimeCompare(p.MLDSA, q.MLDSA) == 1 &&
		subtle.ConstantTimeCompare(p.Ed25519, q.Ed25519) == 1
}
