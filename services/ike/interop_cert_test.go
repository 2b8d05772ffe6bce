package ike

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// writeCertFiles stores a certificate, its key and the CA we trust as the
// PEM files Config names.
func writeCertFiles(t *testing.T, cfg *Config, mine *edge.Cert, trusted *edge.CA) {
	t.Helper()
	dir := t.TempDir()
	cfg.Auth = "cert"
	cfg.Cert, cfg.Key, cfg.CA = filepath.Join(dir, "branch.pem"), filepath.Join(dir, "branch.key"), filepath.Join(dir, "ca.pem")
	for path, data := range map[string][]byte{cfg.Cert: mine.CertPEM, cfg.Key: mine.KeyPEM, cfg.CA: trusted.CertPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInteropCertificates authenticates both ends with certificates from a
// CA made here. We must accept strongSwan only when its chain leads to the
// CA we configured and its certificate names the identity we expect; a
// refused responder leaves nothing installed on either side.
func TestInteropCertificates(t *testing.T) {
	needEdge(t)
	newCA := func(t *testing.T, kt edge.KeyType, name string) *edge.CA {
		ca, err := edge.NewCA(kt, name)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	issue := func(t *testing.T, ca *edge.CA, kt edge.KeyType, id string) *edge.Cert {
		c, err := ca.Issue(kt, id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		kt        edge.KeyType
		edgeID    string // the identity in strongSwan's certificate
		wantID    string // tunnel.remote_id
		rogueCA   bool   // strongSwan's certificate comes from a CA we do not trust
		wantAlgos string // how strongSwan reports verifying our AUTH
		wantErr   func(error) bool
		// proposal, with ke and addke, replaces the default X25519 +
		// ML-KEM-768; wantIKE is how list-sas shows the IKE SA's algorithms.
		proposal  string
		ke, addke []string
		wantIKE   string
	}{
		{name: "ed25519", kt: edge.Ed25519, edgeID: "dc.pqbranch.test", wantID: "dc.pqbranch.test", wantAlgos: "ED25519"},
		{name: "ecdsa-p256-ip-identity", kt: edge.ECDSAP256, edgeID: edge.EdgeWANAddr, wantID: edge.EdgeWANAddr, wantAlgos: "ECDSA_WITH_SHA256_DER"},
		{
			// CNSA-style (RFC 9206): P-384 certificates on both ends and a
			// P-384 CA, our AUTH signed with SHA-384, ECP-384 + ML-KEM-1024.
			name: "cnsa-p384", kt: edge.ECDSAP384, edgeID: "dc.pqbranch.test", wantID: "dc.pqbranch.test", wantAlgos: "ECDSA_WITH_SHA384_DER",
			proposal: "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024", ke: []string{"ecp384"}, addke: []string{"mlkem1024"},
			wantIKE: "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384/KE1_ML_KEM_1024",
		},
		{
			// strongSwan accepts us and sends a chain we cannot verify: we
			// refuse, and must tell it so that it drops its SAs.
			name: "untrusted-ca", kt: edge.Ed25519, edgeID: "dc.pqbranch.test", wantID: "dc.pqbranch.test", rogueCA: true,
			wantAlgos: "ED25519", wantErr: func(err error) bool { return errors.Is(err, ErrAuthFailed) },
		},
		{
			// Our IDr names the edge we want; a strongSwan that is someone
			// else finds no config for it and refuses first. (Our own
			// identity-in-certificate check is covered in cert_test.go:
			// strongSwan never presents a certificate for another ID.)
			name: "other-identity", kt: edge.ECDSAP256, edgeID: "rogue.pqbranch.test", wantID: "dc.pqbranch.test",
			wantErr: func(err error) bool {
				var r *ErrRefused
				return errors.As(err, &r) && r.Notify == message.AUTHENTICATION_FAILED
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ca := newCA(t, tc.kt, "pqbranch interop CA")
			edgeCA := ca
			if tc.rogueCA {
				edgeCA = newCA(t, tc.kt, "pqbranch interop CA") // same name, other key
			}
			branchCert := issue(t, ca, tc.kt, "branch.pqbranch.test")
			var proposals []string
			if tc.proposal != "" {
				proposals = []string{tc.proposal}
			}
			env := startInterop(t, ctx, envConfig{}, edge.Options{
				Name: "dc", RemoteID: branchCert.ID, Proposals: proposals,
				Auth:     edge.Auth{Cert: issue(t, edgeCA, tc.kt, tc.edgeID), CA: ca},
				Children: interopChild("aes256gcm16"),
			})
			cfg := interopConfig()
			cfg.LocalID, cfg.RemoteID = branchCert.ID, tc.wantID
			cfg.KE, cfg.AddKE = tc.ke, tc.addke
			writeCertFiles(t, cfg, branchCert, ca)
			s := env.session(t, cfg)
			err := env.do(t, func() error { return s.Establish(ctx) })
			if tc.wantAlgos != "" {
				env.waitLog(t, regexp.MustCompile(`authentication of 'branch\.pqbranch\.test' with `+tc.wantAlgos+`[^ ]* successful`))
			}
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("Establish = %v", err)
				}
				t.Logf("refused as expected: %v", err)
				if n := len(env.mem.SAs()); n != 0 {
					t.Errorf("%d SAs installed after refusing the responder", n)
				}
				if st := s.Status(); st.State == "established" {
					t.Errorf("status %+v", st)
				}
				if tc.wantAlgos != "" {
					env.waitLog(t, regexp.MustCompile(`parsed INFORMATIONAL request 3 \[ N\(AUTH_FAILED\) \]`))
					env.waitLog(t, regexp.MustCompile(`IKE_SA deleted`))
				}
				if sas := env.listSAs(t, ctx); regexp.MustCompile(`ESTABLISHED|INSTALLED`).MatchString(sas) {
					t.Errorf("strongSwan kept the SAs we refused:\n%s", sas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sas := env.listSAs(t, ctx)
			wantIKE := tc.wantIKE
			if wantIKE == "" {
				wantIKE = "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768"
			}
			mustContain(t, "list-sas", sas, ikeLine(s.ike), wantIKE, "local  '"+tc.edgeID+"'", "remote 'branch.pqbranch.test'")
			mustContain(t, "CHILD_SA", childBlock(sas, s.children[0]), "INSTALLED")
		})
	}
}
