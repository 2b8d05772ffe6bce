package ike

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t *testing.T, name string) testCA {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) issue(t *testing.T, dns string, key crypto.Signer) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dns},
		DNSNames: []string{dns}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCertificateAuth(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tt := range []struct {
		name       string
		ours, edge crypto.Signer
	}{{"ed25519", edKey, ecKey}, {"ecdsa-p256", ecKey, edKey}} {
		t.Run(tt.name, func(t *testing.T) {
			ca := newCA(t, "pqbranch test CA")
			dir := t.TempDir()
			edgeCert := ca.issue(t, "edge.example", tt.edge)
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Signer: tt.edge,
				Chain: [][]byte{edgeCert.Raw}, Roots: roots, PeerID: "branch1.example"})
			cfg := tunnelConfig(r)
			keyDER, _ := x509.MarshalPKCS8PrivateKey(tt.ours)
			cfg.Auth, cfg.PSK = "cert", Secret{}
			cfg.Cert = writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", ca.issue(t, "branch1.example", tt.ours).Raw)
			cfg.Key = writePEM(t, filepath.Join(dir, "key.pem"), "PRIVATE KEY", keyDER)
			cfg.CA = writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw)
			opt, mem := testOptions(t, r)
			s := newSession(t, cfg, opt)
			if err := s.Establish(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkKeysAgree(t, mem, r, 2)

			// The same edge certificate under a CA we do not trust is refused.
			other := newCA(t, "other CA")
			cfg.CA = writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", other.cert.Raw)
			s2 := newSession(t, cfg, opt)
			if err := s2.Establish(context.Background()); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("untrusted CA: err = %v", err)
			}
			// The edge has set up its SAs for us; it must hear that we
			// refused it, or they linger until its DPD.
			if rs := r.Stats(); rs.AuthFailedIn != 1 || rs.ActiveIKE != 1 || len(mem.SAs()) != 2 {
				t.Fatalf("after refusing the edge: responder %+v, %d SAs installed", rs, len(mem.SAs()))
			}
			// A trusted certificate for another name is refused too.
			cfg.CA = writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw)
			cfg.RemoteID = "other.example"
			s3 := newSession(t, cfg, opt)
			if err := s3.Establish(context.Background()); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("wrong identity: err = %v", err)
			}
			if rs := r.Stats(); rs.AuthFailedIn != 2 || rs.ActiveIKE != 1 || len(mem.SAs()) != 2 {
				t.Fatalf("after refusing the edge: responder %+v, %d SAs installed", rs, len(mem.SAs()))
			}
		})
	}
}
