// Package sig produces and checks IKEv2 signature AUTH data: RFC 7427
// Digital Signature (Ed25519, ECDSA with SHA-2) and RFC 4754 ECDSA-256.
package sig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// AlgorithmIdentifier encodings (DER).
var (
	algEd25519     = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}
	algECDSASHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	algECDSASHA384 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}
	algECDSASHA512 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}
)

// Sign returns an RFC 7427 AUTH payload over octets.
func Sign(signer crypto.Signer, octets []byte) (*message.Auth, error) {
	var alg, s []byte
	var err error
	switch k := signer.(type) {
	case ed25519.PrivateKey:
		alg, s = algEd25519, ed25519.Sign(k, octets)
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(octets)
		alg = algECDSASHA256
		s, err = ecdsa.SignASN1(rand.Reader, k, h[:])
	default:
		return nil, fmt.Errorf("key type %T not supported", signer)
	}
	if err != nil {
		return nil, fmt.Errorf("sign AUTH: %w", err)
	}
	data := append([]byte{byte(len(alg))}, alg...)
	return &message.Auth{Method: message.AuthDigitalSignature, Data: append(data, s...)}, nil
}

// Verify checks a signature AUTH payload over octets with pub.
func Verify(pub crypto.PublicKey, auth *message.Auth, octets []byte) error {
	var alg, s []byte
	switch auth.Method {
	case message.AuthDigitalSignature:
		if len(auth.Data) < 1 || len(auth.Data) < 1+int(auth.Data[0]) {
			return errors.New("truncated signature AUTH")
		}
		n := int(auth.Data[0])
		alg, s = auth.Data[1:1+n], auth.Data[1+n:]
	case message.AuthECDSA256:
		if len(auth.Data) != 64 {
			return errors.New("ECDSA-256 AUTH must be 64 bytes")
		}
		alg, s = algECDSASHA256, asn1Sig(auth.Data[:32], auth.Data[32:])
	default:
		return fmt.Errorf("unsupported AUTH method %d", auth.Method)
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if !bytes.Equal(alg, algEd25519) || !ed25519.Verify(k, octets, s) {
			return errors.New("Ed25519 signature does not verify")
		}
		return nil
	case *ecdsa.PublicKey:
		var digest []byte
		switch {
		case bytes.Equal(alg, algECDSASHA256):
			h := sha256.Sum256(octets)
			digest = h[:]
		case bytes.Equal(alg, algECDSASHA384):
			h := sha512.Sum384(octets)
			digest = h[:]
		case bytes.Equal(alg, algECDSASHA512):
			h := sha512.Sum512(octets)
			digest = h[:]
		default:
			return fmt.Errorf("signature algorithm %x does not fit an ECDSA key", alg)
		}
		if !ecdsa.VerifyASN1(k, digest, s) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("key type %T not supported", pub)
}

// asn1Sig encodes r and s as an ECDSA-Sig-Value.
func asn1Sig(r, s []byte) []byte {
	intBytes := func(b []byte) []byte {
		b = bytes.TrimLeft(b, "\x00")
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(intBytes(r), intBytes(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}
