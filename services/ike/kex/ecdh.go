package kex

import (
	"crypto/ecdh"
	"fmt"
	"io"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

func curveFor(method uint16) ecdh.Curve {
	switch method {
	case message.KE_X25519:
		return ecdh.X25519()
	case message.KE_ECP256:
		return ecdh.P256()
	case message.KE_ECP384:
		return ecdh.P384()
	}
	return nil
}

type ecdhInitiator struct {
	method uint16
	priv   *ecdh.PrivateKey
}

func newECDH(method uint16, c ecdh.Curve, rand io.Reader) (*ecdhInitiator, error) {
	priv, err := c.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("%s key generation: %w", Name(method), err)
	}
	return &ecdhInitiator{method: method, priv: priv}, nil
}

func (e *ecdhInitiator) Method() uint16 { return e.method }
func (e *ecdhInitiator) Public() []byte { return toWire(e.priv.PublicKey().Bytes()) }

func (e *ecdhInitiator) Complete(peer []byte) ([]byte, error) {
	return agree(e.priv, peer)
}

func respondECDH(c ecdh.Curve, peer []byte, rand io.Reader) ([]byte, []byte, error) {
	priv, err := c.GenerateKey(rand)
	if err != nil {
		return nil, nil, err
	}
	shared, err := agree(priv, peer)
	if err != nil {
		return nil, nil, err
	}
	return toWire(priv.PublicKey().Bytes()), shared, nil
}

// agree checks the peer's point (crypto/ecdh rejects off-curve points, the
// identity and low-order X25519 points) and computes the shared secret,
// which for the NIST curves is the x coordinate as RFC 5903 wants.
func agree(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := priv.Curve().NewPublicKey(fromWire(priv.Curve(), peer))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeerData, err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPeerData, err)
	}
	return shared, nil
}

// IKEv2 carries NIST points as x|y without the SEC 1 0x04 prefix (RFC 5903).
func toWire(b []byte) []byte {
	if len(b) > 32 && b[0] == 4 {
		return b[1:]
	}
	return b
}

func fromWire(c ecdh.Curve, b []byte) []byte {
	if c == ecdh.X25519() {
		return b
	}
	return append([]byte{4}, b...)
}
