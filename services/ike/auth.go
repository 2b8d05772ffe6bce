package ike

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sig"
)

// ErrAuthFailed reports a responder whose AUTH payload does not verify.
var ErrAuthFailed = errors.New("responder authentication failed")

// authenticator signs our AUTH payload and verifies the responder's.
type authenticator struct {
	psk    []byte
	signer crypto.Signer
	chain  [][]byte // our certificate first
	roots  *x509.CertPool
	caKeys []byte // SHA-1 of each CA's SubjectPublicKeyInfo, for CERTREQ
	now    func() time.Time
}

func newAuthenticator(c *Config) (*authenticator, error) {
	a := &authenticator{now: time.Now}
	if c.Auth == "psk" {
		a.psk = c.PSK.Bytes()
		return a, nil
	}
	chain, err := readCerts(c.Cert)
	if err != nil {
		return nil, fmt.Errorf("tunnel.cert: %w", err)
	}
	for _, cert := range chain {
		a.chain = append(a.chain, cert.Raw)
	}
	if a.signer, err = readKey(c.Key); err != nil {
		return nil, fmt.Errorf("tunnel.key: %w", err)
	}
	if !publicKeysEqual(chain[0].PublicKey, a.signer.Public()) {
		return nil, fmt.Errorf("tunnel.key: does not match the certificate in %s", c.Cert)
	}
	cas, err := readCerts(c.CA)
	if err != nil {
		return nil, fmt.Errorf("tunnel.ca: %w", err)
	}
	a.roots = x509.NewCertPool()
	for _, ca := range cas {
		a.roots.AddCert(ca)
		h := sha1.Sum(ca.RawSubjectPublicKeyInfo)
		a.caKeys = append(a.caKeys, h[:]...)
	}
	return a, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	var k any
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key type %T not supported (Ed25519, ECDSA P-256 or P-384)", path, k)
	}
	// Refuse here what sig.Sign cannot use, rather than at the first IKE_AUTH.
	if _, err := sig.SchemeFor(signer); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	x, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && x.Equal(b)
}

// certPayloads are the CERT and CERTREQ payloads of our IKE_AUTH request.
func (a *authenticator) certPayloads() []message.Payload {
	if a.psk != nil {
		return nil
	}
	var ps []message.Payload
	for _, c := range a.chain {
		ps = append(ps, &message.Cert{Encoding: message.CertX509Signature, Data: c})
	}
	return append(ps, &message.CertReq{Encoding: message.CertX509Signature, Data: a.caKeys})
}

// sign produces our AUTH payload over octets.
func (a *authenticator) sign(prf keys.PRF, octets []byte) (*message.Auth, error) {
	if a.psk != nil {
		return &message.Auth{Method: message.AuthSharedKey, Data: keys.PSKAuth(prf, a.psk, octets)}, nil
	}
	return sig.Sign(a.signer, octets)
}

// verify checks the responder's AUTH over octets; for certificates it also
// verifies the chain to our CA and that the leaf names the expected identity.
func (a *authenticator) verify(prf keys.PRF, octets []byte, auth *message.Auth, certs []*message.Cert, id identity) error {
	if auth == nil {
		return fmt.Errorf("%w: no AUTH payload", ErrAuthFailed)
	}
	if a.psk != nil {
		if auth.Method != message.AuthSharedKey {
			return fmt.Errorf("%w: method %d, want shared key", ErrAuthFailed, auth.Method)
		}
		if !hmac.Equal(auth.Data, keys.PSKAuth(prf, a.psk, octets)) {
			return fmt.Errorf("%w: PSK AUTH mismatch", ErrAuthFailed)
		}
		return nil
	}
	leaf, err := a.verifyChain(certs)
	if err != nil {
		return err
	}
	if err := id.inCert(leaf); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	if err := sig.Verify(leaf.PublicKey, auth, octets); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	return nil
}

func (a *authenticator) verifyChain(certs []*message.Cert) (*x509.Certificate, error) {
	var parsed []*x509.Certificate
	for _, c := range certs {
		if c.Encoding != message.CertX509Signature {
			continue
		}
		x, err := x509.ParseCertificate(c.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: responder certificate: %v", ErrAuthFailed, err)
		}
		parsed = append(parsed, x)
	}
	if len(parsed) == 0 {
		return nil, fmt.Errorf("%w: responder sent no certificate", ErrAuthFailed)
	}
	inter := x509.NewCertPool()
	for _, c := range parsed[1:] {
		inter.AddCert(c)
	}
	_, err := parsed[0].Verify(x509.VerifyOptions{
		Roots: a.roots, Intermediates: inter, CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: responder certificate: %v", ErrAuthFailed, err)
	}
	return parsed[0], nil
}
