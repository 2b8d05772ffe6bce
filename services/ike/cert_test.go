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
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sig"
)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t *testing.T, name string, key crypto.Signer) testCA {
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
	p256 := mustECKey(t, elliptic.P256())
	p384, p384Edge, p384CA := mustECKey(t, elliptic.P384()), mustECKey(t, elliptic.P384()), mustECKey(t, elliptic.P384())
	for _, tt := range []struct {
		name           string
		ours, edge, ca crypto.Signer
		keyPEM         string     // PEM type of our key file
		want           sig.Scheme // how the edge must see our AUTH signed
		ke, addke      uint16     // the only groups both ends accept; 0: the defaults
	}{
		{"ed25519", edKey, p256, edKey, "PRIVATE KEY", sig.SchemeEd25519, 0, 0},
		{"ecdsa-p256", p256, edKey, edKey, "PRIVATE KEY", sig.SchemeECDSASHA256, 0, 0},
		// CNSA-style: every key P-384 and our AUTH signed with SHA-384,
		// ECP-384 and ML-KEM-1024; the key file in SEC 1 form, as
		// `openssl ecparam -genkey` writes it.
		{"ecdsa-p384", p384, p384Edge, p384CA, "EC PRIVATE KEY", sig.SchemeECDSASHA384, message.KE_ECP384, message.KE_MLKEM1024},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ca := newCA(t, "pqbranch test CA", tt.ca)
			dir := t.TempDir()
			edgeCert := ca.issue(t, "edge.example", tt.edge)
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			rc := ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}, Signer: tt.edge,
				Chain: [][]byte{edgeCert.Raw}, Roots: roots, PeerID: "branch1.example"}
			if tt.ke != 0 {
				rc.KE, rc.AddKE = []uint16{tt.ke}, []uint16{tt.addke}
			}
			r := startResponder(t, rc)
			cfg := tunnelConfig(r)
			if tt.ke != 0 {
				cfg.KE, cfg.AddKE = KEList{kex.Name(tt.ke)}, []string{kex.Name(tt.addke)}
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(tt.ours)
			if tt.keyPEM == "EC PRIVATE KEY" {
				keyDER, err = x509.MarshalECPrivateKey(tt.ours.(*ecdsa.PrivateKey))
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg.Auth, cfg.PSK = "cert", Secret{}
			cfg.Cert = writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", ca.issue(t, "branch1.example", tt.ours).Raw)
			cfg.Key = writePEM(t, filepath.Join(dir, "key.pem"), tt.keyPEM, keyDER)
			cfg.CA = writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw)
			opt, mem := testOptions(t, r)
			s := newSession(t, cfg, opt)
			if err := s.Establish(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkKeysAgree(t, mem, r, 2)
			if got := r.Stats().PeerAuthScheme; got != tt.want {
				t.Fatalf("the edge verified our AUTH as %v, want %v", got, tt.want)
			}
			if st := r.Stats(); tt.ke != 0 && (st.LastKE != tt.ke || !slices.Equal(st.LastAddKE, []uint16{tt.addke})) {
				t.Fatalf("negotiated KE %d + %v, want %d + %d", st.LastKE, st.LastAddKE, tt.ke, tt.addke)
			}

			// The same edge certificate under a CA we do not trust is refused.
			_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
			other := newCA(t, "other CA", otherKey)
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

// A key that sig cannot sign with is refused when the config is loaded,
// naming the file, not at the first IKE_AUTH.
func TestCertificateKeyRefused(t *testing.T) {
	ca := newCA(t, "pqbranch test CA", mustECKey(t, elliptic.P384()))
	dir := t.TempDir()
	for _, curve := range []elliptic.Curve{elliptic.P224(), elliptic.P521()} {
		key := mustECKey(t, curve)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{LocalID: "branch1.example", RemoteID: "edge.example", Remote: "127.0.0.1", Auth: "cert",
			LocalSubnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, RemoteSubnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}}
		cfg.Cert = writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", ca.issue(t, "branch1.example", key).Raw)
		cfg.Key = writePEM(t, filepath.Join(dir, "key.pem"), "PRIVATE KEY", der)
		cfg.CA = writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw)
		_, err = New(cfg, Options{})
		if err == nil || !strings.Contains(err.Error(), "tunnel.key") || !strings.Contains(err.Error(), cfg.Key) || !strings.Contains(err.Error(), curve.Params().Name) {
			t.Errorf("%s key: New = %v, want an error naming tunnel.key, the file and the curve", curve.Params().Name, err)
		}
	}
}

func mustECKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
