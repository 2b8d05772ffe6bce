// Package sig produces and checks IKEv2 signature AUTH data: RFC 7427
// Digital Signature (Ed25519, ECDSA with SHA-2) and the RFC 4754 ECDSA
// methods some peers still send.
package sig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// Scheme is the signature algorithm of an AUTH payload: the key type and,
// for ECDSA, the hash signed.
type Scheme uint8

const (
	SchemeUnknown Scheme = iota
	SchemeEd25519
	SchemeECDSASHA256
	SchemeECDSASHA384
	SchemeECDSASHA512
)

func (s Scheme) String() string {
	switch s {
	case SchemeUnknown:
		return "unknown"
	case SchemeEd25519:
		return "Ed25519"
	case SchemeECDSASHA256:
		return "ECDSA-SHA256"
	case SchemeECDSASHA384:
		return "ECDSA-SHA384"
	case SchemeECDSASHA512:
		return "ECDSA-SHA512"
	}
	return fmt.Sprintf("Scheme(%d)", uint8(s))
}

// AlgorithmIdentifier encodings (DER) of RFC 7427's AUTH data; Ed25519 is
// RFC 8420's.
var algorithmIDs = map[Scheme][]byte{
	SchemeEd25519:     {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70},
	SchemeECDSASHA256: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02},
	SchemeECDSASHA384: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03},
	SchemeECDSASHA512: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04},
}

// digest hashes octets as an ECDSA scheme prescribes.
func (s Scheme) digest(octets []byte) ([]byte, bool) {
	switch s {
	case SchemeECDSASHA256:
		h := sha256.Sum256(octets)
		return h[:], true
	case SchemeECDSASHA384:
		h := sha512.Sum384(octets)
		return h[:], true
	case SchemeECDSASHA512:
		h := sha512.Sum512(octets)
		return h[:], true
	}
	return nil, false
}

// SchemeFor is the scheme Sign uses with signer. ECDSA signs with the hash
// of the curve's strength (RFC 5480 section 4): SHA-256 on P-256, SHA-384 on
// P-384, as CNSA profiles of IKEv2 (RFC 9206) require for P-384. Every one
// of them is in the SIGNATURE_HASH_ALGORITHMS we and strongSwan announce.
func SchemeFor(signer crypto.Signer) (Scheme, error) {
	switch k := signer.(type) {
	case ed25519.PrivateKey:
		return SchemeEd25519, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return SchemeECDSASHA256, nil
		case elliptic.P384():
			return SchemeECDSASHA384, nil
		}
		return SchemeUnknown, fmt.Errorf("ECDSA curve %s not supported (P-256 or P-384)", k.Curve.Params().Name)
	}
	return SchemeUnknown, fmt.Errorf("key type %T not supported (Ed25519 or ECDSA)", signer)
}

// Sign returns an RFC 7427 AUTH payload over octets.
func Sign(signer crypto.Signer, octets []byte) (*message.Auth, error) {
	scheme, err := SchemeFor(signer)
	if err != nil {
		return nil, err
	}
	var s []byte
	if k, ok := signer.(ed25519.PrivateKey); ok {
		s = ed25519.Sign(k, octets)
	} else {
		digest, _ := scheme.digest(octets)
		if s, err = ecdsa.SignASN1(rand.Reader, signer.(*ecdsa.PrivateKey), digest); err != nil {
			return nil, fmt.Errorf("sign AUTH with %v: %w", scheme, err)
		}
	}
	alg := algorithmIDs[scheme]
	data := append([]byte{byte(len(alg))}, alg...)
	return &message.Auth{Method: message.AuthDigitalSignature, Data: append(data, s...)}, nil
}

// signature is an AUTH payload taken apart.
type signature struct {
	scheme Scheme
	value  []byte         // ASN.1 ECDSA-Sig-Value for ECDSA
	curve  elliptic.Curve // fixed by the RFC 4754 methods; nil for RFC 7427
}

func parse(auth *message.Auth) (signature, error) {
	switch auth.Method {
	case message.AuthDigitalSignature:
		if len(auth.Data) < 1 || len(auth.Data) < 1+int(auth.Data[0]) {
			return signature{}, errors.New("truncated signature AUTH")
		}
		n := int(auth.Data[0])
		alg := auth.Data[1 : 1+n]
		for scheme, id := range algorithmIDs {
			if bytes.Equal(alg, id) {
				return signature{scheme: scheme, value: auth.Data[1+n:]}, nil
			}
		}
		return signature{}, fmt.Errorf("signature algorithm %x not supported (Ed25519 or ECDSA with SHA-256/384/512)", alg)
	case message.AuthECDSA256, message.AuthECDSA384:
		// RFC 4754: r|s, each the size of the curve, and the curve and hash
		// fixed by the method.
		sig := signature{scheme: SchemeECDSASHA256, curve: elliptic.P256()}
		if auth.Method == message.AuthECDSA384 {
			sig = signature{scheme: SchemeECDSASHA384, curve: elliptic.P384()}
		}
		size := (sig.curve.Params().BitSize + 7) / 8
		if len(auth.Data) != 2*size {
			return signature{}, fmt.Errorf("%v AUTH (method %d) is %d bytes, want %d", sig.scheme, auth.Method, len(auth.Data), 2*size)
		}
		sig.value = asn1Sig(auth.Data[:size], auth.Data[size:])
		return sig, nil
	}
	return signature{}, fmt.Errorf("unsupported AUTH method %d", auth.Method)
}

// SchemeOf names the signature scheme of a signature AUTH payload.
func SchemeOf(auth *message.Auth) (Scheme, error) {
	s, err := parse(auth)
	return s.scheme, err
}

// Verify checks a signature AUTH payload over octets with pub.
func Verify(pub crypto.PublicKey, auth *message.Auth, octets []byte) error {
	sig, err := parse(auth)
	if err != nil {
		return err
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if sig.scheme != SchemeEd25519 {
			return fmt.Errorf("%v signature for an Ed25519 key", sig.scheme)
		}
		if !ed25519.Verify(k, octets, sig.value) {
			return errors.New("Ed25519 signature does not verify")
		}
		return nil
	case *ecdsa.PublicKey:
		digest, ok := sig.scheme.digest(octets)
		if !ok {
			return fmt.Errorf("%v signature for an ECDSA key", sig.scheme)
		}
		if sig.curve != nil && sig.curve != k.Curve {
			return fmt.Errorf("AUTH method %d is for %s, the key is %s", auth.Method, sig.curve.Params().Name, k.Curve.Params().Name)
		}
		if !ecdsa.VerifyASN1(k, digest, sig.value) {
			return fmt.Errorf("%v signature does not verify", sig.scheme)
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
