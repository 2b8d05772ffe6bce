// Package kex holds the key exchange methods IKEv2 negotiates as Transform
// Type 4 (KE) and 6..12 (ADDKE): classical ECDH groups and ML-KEM. Both kinds
// share one shape: the initiator sends a public value and completes with the
// responder's answer; the responder answers a public value in one step.
package kex

import (
	"errors"
	"fmt"
	"io"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// Initiator is the initiator's half of one key exchange. A fresh one is made
// for every exchange; it is used once.
type Initiator interface {
	Method() uint16
	Public() []byte
	// Complete checks the responder's KE data and returns the shared secret.
	Complete(peer []byte) ([]byte, error)
}

// ErrPeerData reports KE data from the peer that fails validation.
var ErrPeerData = errors.New("invalid key exchange data from peer")

// NewInitiator starts an exchange of the given method.
func NewInitiator(method uint16, rand io.Reader) (Initiator, error) {
	if c := curveFor(method); c != nil {
		return newECDH(method, c, rand)
	}
	if s := schemeFor(method); s != nil {
		return newKEM(method, s, rand)
	}
	return nil, fmt.Errorf("key exchange method %d not supported", method)
}

// Respond is the responder's half: it takes the initiator's public value and
// returns its own KE data and the shared secret.
func Respond(method uint16, peer []byte, rand io.Reader) (public, shared []byte, err error) {
	if c := curveFor(method); c != nil {
		return respondECDH(c, peer, rand)
	}
	if s := schemeFor(method); s != nil {
		return respondKEM(s, peer, rand)
	}
	return nil, nil, fmt.Errorf("key exchange method %d not supported", method)
}

// IsPostQuantum reports whether method is an ML-KEM method.
func IsPostQuantum(method uint16) bool { return schemeFor(method) != nil }

var names = map[uint16]string{
	message.KE_X25519: "x25519", message.KE_ECP256: "ecp256", message.KE_ECP384: "ecp384",
	message.KE_MLKEM512: "mlkem512", message.KE_MLKEM768: "mlkem768", message.KE_MLKEM1024: "mlkem1024",
	message.KE_NONE: "none",
}

// Name returns the configuration name of a method ("x25519", "mlkem768", ...).
func Name(method uint16) string {
	if n, ok := names[method]; ok {
		return n
	}
	return fmt.Sprintf("ke%d", method)
}

// ByName returns the Transform ID of a configuration name.
func ByName(name string) (uint16, error) {
	for id, n := range names {
		if n == name && id != message.KE_NONE {
			return id, nil
		}
	}
	return 0, fmt.Errorf("unknown key exchange method %q", name)
}
