package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyType selects the signature algorithm of a test key.
type KeyType int

const (
	Ed25519 KeyType = iota
	ECDSAP256
	ECDSAP384 // CNSA-style certificates (RFC 9206)
)

func (k KeyType) String() string {
	switch k {
	case Ed25519:
		return "Ed25519"
	case ECDSAP256:
		return "ECDSA-P256"
	case ECDSAP384:
		return "ECDSA-P384"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

func (k KeyType) generate() (crypto.Signer, error) {
	switch k {
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("edge: unknown key type %v", k)
}

// Cert is a certificate with its private key, ready for swanctl (PEM) and
// for Go code (parsed).
type Cert struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS#8, which strongSwan reads for every key type
	// ID is the identity the certificate vouches for (its first SAN), to
	// use as an IKE ID.
	ID string
}

// CA is a throw-away certificate authority for tests.
type CA struct {
	Cert
}

// NewCA creates a self-signed CA valid for 30 days.
func NewCA(kt KeyType, name string) (*CA, error) {
	key, err := kt.generate()
	if err != nil {
		return nil, fmt.Errorf("edge: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"pqbranch test"}, CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	c, err := makeCert(tmpl, tmpl, key.Public(), key, key)
	if err != nil {
		return nil, err
	}
	c.ID = name
	return &CA{Cert: *c}, nil
}

// Issue creates a certificate for id, signed by the CA. An id that parses as
// an IP address becomes an IP SAN, anything else a DNS SAN; strongSwan only
// accepts an IKE ID the certificate contains.
func (ca *CA) Issue(kt KeyType, id string) (*Cert, error) {
	key, err := kt.generate()
	if err != nil {
		return nil, fmt.Errorf("edge: key for %s: %w", id, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"pqbranch test"}, CommonName: id},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip := net.ParseIP(id); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{id}
	}
	c, err := makeCert(tmpl, ca.Cert.Cert, key.Public(), ca.Key, key)
	if err != nil {
		return nil, err
	}
	c.ID = id
	return c, nil
}

func makeCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer, key crypto.Signer) (*Cert, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("edge: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("edge: marshal key: %w", err)
	}
	return &Cert{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}, nil
}
