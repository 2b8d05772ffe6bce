package ike

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// TestInteropStrongSwan59 runs against Debian 12's strongSwan 5.9, which
// knows neither ML-KEM nor RFC 9370. With allow_classical we get a classical
// X25519 tunnel; without it we must refuse with a clear error and leave
// nothing installed on either side.
func TestInteropStrongSwan59(t *testing.T) {
	needEdge(t)
	for _, tc := range []struct {
		name           string
		allowClassical bool
	}{
		{name: "allow-classical", allowClassical: true},
		{name: "post-quantum-required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			const psk = "interop-classical-psk-0123456789"
			env := startInterop(t, ctx, envConfig{}, edge.Options{
				Distro: edge.Bookworm, Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
				Auth:     edge.Auth{PSK: psk},
				Children: interopChild("aes256gcm16-x25519"),
			})
			if v, err := env.edge.Version(ctx); err != nil || !regexp.MustCompile(`^strongSwan 5\.9\.`).MatchString(v) {
				t.Fatalf("edge is %q (%v), want strongSwan 5.9", v, err)
			}
			cfg := interopConfig()
			cfg.Auth, cfg.PSK, cfg.AllowClassical = "psk", NewSecret(psk), tc.allowClassical
			s := env.session(t, cfg)
			err := env.do(t, func() error { return s.Establish(ctx) })
			sas := env.listSAs(t, ctx)
			if !tc.allowClassical {
				// 5.9 refuses the proposal outright (unknown transform
				// type 6); the error must say what we offered.
				var refused *ErrRefused
				if !errors.As(err, &refused) || refused.Notify != message.NO_PROPOSAL_CHOSEN ||
					!strings.Contains(err.Error(), "we offered ENCR aes256gcm16|aes128gcm16, PRF prfsha384|prfsha256|prfsha512, KE x25519|ecp256|ecp384, ADDKE1 mlkem768;") ||
					!strings.Contains(err.Error(), "allow_classical") {
					t.Fatalf("Establish = %v, want NO_PROPOSAL_CHOSEN with what we offered", err)
				}
				env.waitLog(t, regexp.MustCompile(`received proposals unacceptable`))
				t.Logf("refused as expected: %v", err)
				if n := len(env.mem.SAs()); n != 0 {
					t.Errorf("%d SAs installed without post-quantum key exchange", n)
				}
				if st := s.Status(); st.State != "down" || st.LastError == "" {
					t.Errorf("status %+v", st)
				}
				if regexp.MustCompile(`ESTABLISHED|INSTALLED`).MatchString(sas) {
					t.Errorf("strongSwan has SAs after we refused:\n%s", sas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st := s.Status(); st.State != "established" || st.KE != "x25519" || len(st.AddKE) != 0 {
				t.Errorf("status %+v", st)
			}
			// Only our second proposal, the one without ADDKE, was acceptable.
			env.waitLog(t, regexp.MustCompile(`received proposals: IKE:[^\n]*UNKNOWN_6_36/UNKNOWN_6_0, IKE:[A-Z0-9_/]*CURVE_25519/ECP_256/ECP_384\n`))
			mustContain(t, "list-sas", sas, ikeLine(s.ike), "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519\n")
			mustContain(t, "CHILD_SA", childBlock(sas, s.children[0]), "INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256")
			if n := len(env.mem.SAs()); n != 2 {
				t.Errorf("%d SAs installed, want 2", n)
			}
			// Rekeys must offer what the SA uses: ADDKE would be refused.
			if err := env.do(t, func() error { return s.rekeyChild(ctx, s.children[0]) }); err != nil {
				t.Fatalf("child rekey: %v", err)
			}
			if err := env.do(t, func() error { return s.rekeyIKE(ctx) }); err != nil {
				t.Fatalf("IKE rekey: %v", err)
			}
			env.waitLog(t, regexp.MustCompile(`IKE_SA dc\[2\] rekeyed between`))
			sas = env.listSAs(t, ctx)
			mustContain(t, "list-sas after rekeys", sas, ikeLine(s.ike), "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519\n")
			mustContain(t, "rekeyed CHILD_SA", childBlock(sas, s.children[0]), "INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/CURVE_25519")
		})
	}
}
