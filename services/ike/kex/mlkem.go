package kex

import (
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/mlkem/mlkem1024"
	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

func schemeFor(method uint16) kem.Scheme {
	switch method {
	case message.KE_MLKEM512:
		return mlkem512.Scheme()
	case message.KE_MLKEM768:
		return mlkem768.Scheme()
	case message.KE_MLKEM1024:
		return mlkem1024.Scheme()
	}
	return nil
}

type kemInitiator struct {
	method uint16
	s      kem.Scheme
	pub    []byte
	priv   kem.PrivateKey
}

func newKEM(method uint16, s kem.Scheme, rand io.Reader) (*kemInitiator, error) {
	// Derive from a fresh seed drawn from rand so tests can make the
	// exchange deterministic; the seed is independent of any ECDH key.
	seed := make([]byte, s.SeedSize())
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("%s key generation: %w", Name(method), err)
	}
	pk, sk := s.DeriveKeyPair(seed)
	pub, err := pk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &kemInitiator{method: method, s: s, pub: pub, priv: sk}, nil
}

func (k *kemInitiator) Method() uint16 { return k.method }
func (k *kemInitiator) Public() []byte { return k.pub }

// Complete decapsulates. The length check is FIPS 203's ciphertext input
// check; a wrong-but-well-sized ciphertext yields the implicit-rejection
// secret, which makes the next exchange fail to authenticate.
func (k *kemInitiator) Complete(ct []byte) ([]byte, error) {
	if len(ct) != k.s.CiphertextSize() {
		return nil, fmt.Errorf("%w: %s ciphertext is %d bytes, want %d", ErrPeerData, Name(k.method), len(ct), k.s.CiphertextSize())
	}
	ss, err := k.s.Decapsulate(k.priv, ct)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeerData, err)
	}
	return ss, nil
}

func respondKEM(s kem.Scheme, peer []byte, rand io.Reader) ([]byte, []byte, error) {
	if len(peer) != s.PublicKeySize() {
		return nil, nil, fmt.Errorf("%w: %s encapsulation key is %d bytes, want %d", ErrPeerData, s.Name(), len(peer), s.PublicKeySize())
	}
	pk, err := s.UnmarshalBinaryPublicKey(peer) // includes the FIPS 203 modulus check
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrPeerData, err)
	}
	seed := make([]byte, s.EncapsulationSeedSize())
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, nil, err
	}
	return s.EncapsulateDeterministically(pk, seed)
}
