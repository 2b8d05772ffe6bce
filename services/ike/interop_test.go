package ike

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
)

// waitLog waits (briefly: charon logs as it answers) for re in charon's log
// and returns every match of it.
func (env *interopEnv) waitLog(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := env.edge.WaitLog(ctx, re); err != nil {
		t.Errorf("charon log: %v", err)
		return nil
	}
	return re.FindAllString(env.edge.Log(), -1)
}

// ikeLine is the IKE SA's header line in `swanctl --list-sas`, which names
// both SPIs; the responder marks its own with *.
func ikeLine(sa *ikeSA) string {
	return fmt.Sprintf("%016x_i %016x_r*", sa.spii, sa.spir)
}

// childBlock returns the list-sas block of the CHILD_SA whose SPIs are
// ours mirrored (strongSwan's in is our out), or "" when there is none.
func childBlock(sas string, c *childSA) string {
	in := regexp.MustCompile(fmt.Sprintf(`(?m)^\s+in\s+%08x,`, c.spiOut))
	out := regexp.MustCompile(fmt.Sprintf(`(?m)^\s+out\s+%08x,`, c.spiIn))
	for _, block := range regexp.MustCompile(`(?m)^\s+\S+: #\d+, reqid`).Split(sas, -1)[1:] {
		if in.MatchString(block) && out.MatchString(block) {
			return block
		}
	}
	return ""
}

// TestInteropStrongSwanPSK runs our initiator against strongSwan 6.1 with
// X25519+ML-KEM-768 and PSK, then rekeys the Child SA and the IKE SA, each
// with a fresh X25519+ML-KEM-768 exchange (CREATE_CHILD_SA + IKE_FOLLOWUP_KE).
func TestInteropStrongSwanPSK(t *testing.T) {
	needEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const psk = "interop-test-psk-0123456789"
	env := startInterop(t, ctx, envConfig{}, edge.Options{
		Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
		Auth:     edge.Auth{PSK: psk},
		Children: interopChild("aes256gcm16-x25519-ke1_mlkem768"),
	})
	cfg := interopConfig()
	cfg.Auth, cfg.PSK = "psk", NewSecret(psk)
	s := env.session(t, cfg)
	if err := env.do(t, func() error { return s.Establish(ctx) }); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if st.State != "established" || st.KE != "x25519" || len(st.AddKE) != 1 || st.AddKE[0] != "mlkem768" {
		t.Fatalf("status %+v", st)
	}
	sas := env.listSAs(t, ctx)
	t.Logf("swanctl --list-sas:\n%s", sas)
	mustContain(t, "list-sas", sas, "ESTABLISHED", ikeLine(s.ike), "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768")
	first := s.children[0]
	mustContain(t, "first CHILD_SA", childBlock(sas, first), "INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256")
	env.waitLog(t, regexp.MustCompile(`parsed IKE_INTERMEDIATE request 1 \[ KE \]`))

	followups := regexp.MustCompile(`parsed IKE_FOLLOWUP_KE request \d+ \[ KE N\(ADD_KE\) \]`)
	if err := env.do(t, func() error { return s.rekeyChild(ctx, first) }); err != nil {
		t.Fatalf("child rekey: %v", err)
	}
	if len(s.children) != 1 || s.children[0] == first || len(env.mem.SAs()) != 2 {
		t.Fatalf("after child rekey: %d children, %d SAs installed; want the new pair only", len(s.children), len(env.mem.SAs()))
	}
	if n := len(env.waitLog(t, followups)); n != 1 {
		t.Errorf("child rekey: %d IKE_FOLLOWUP_KE exchanges, want 1", n)
	}
	env.waitLog(t, regexp.MustCompile(`rekeyed CHILD_SA net\{1\} with SPIs [0-9a-f]+_i [0-9a-f]+_o with net\{2\}`))
	oldIKE := s.ike
	if err := env.do(t, func() error { return s.rekeyIKE(ctx) }); err != nil {
		t.Fatalf("IKE rekey: %v", err)
	}
	if n := len(env.waitLog(t, followups)); n != 2 {
		t.Errorf("after IKE rekey: %d IKE_FOLLOWUP_KE exchanges, want 2", n)
	}
	env.waitLog(t, regexp.MustCompile(`IKE_SA dc\[2\] rekeyed between`))
	env.waitLog(t, regexp.MustCompile(`received DELETE for IKE_SA dc\[1\]`))

	sas = env.listSAs(t, ctx)
	t.Logf("after rekeys:\n%s", sas)
	mustContain(t, "list-sas after rekeys", sas, ikeLine(s.ike), "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768")
	if strings.Contains(sas, fmt.Sprintf("%016x_i", oldIKE.spii)) {
		t.Errorf("the rekeyed IKE SA is still listed")
	}
	mustContain(t, "rekeyed CHILD_SA", childBlock(sas, s.children[0]),
		"INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/CURVE_25519/KE1_ML_KEM_768")
	if err := env.do(t, func() error { return s.checkLiveness(ctx) }); err != nil {
		t.Errorf("liveness after rekeys: %v", err)
	}
	if st := s.Status(); st.ChildRekeys != 1 || st.IKERekeys != 1 || st.AddKE[0] != "mlkem768" {
		t.Errorf("status after rekeys: %+v", st)
	}
}

// TestInteropMLKEM1024Fragments runs X25519+ML-KEM-1024 over a WAN link with
// MTU 1280. Both 1568-byte KE payloads of IKE_INTERMEDIATE exceed it, so each
// side must split its message into RFC 7383 fragments. charon's log proves
// both directions: the kernel could otherwise have IP-fragmented the
// datagrams and the handshake would succeed all the same.
func TestInteropMLKEM1024Fragments(t *testing.T) {
	needEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const psk = "interop-fragments-psk-0123456789"
	env := startInterop(t, ctx, envConfig{mtu: 1280}, edge.Options{
		Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
		Auth:      edge.Auth{PSK: psk},
		Proposals: []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem1024"},
		Children:  interopChild("aes256gcm16"),
	})
	if out, err := env.branch.Run(ctx, "ip", "link", "show", "wan0"); err != nil || !strings.Contains(out, "mtu 1280 ") {
		t.Fatalf("branch WAN link is not at MTU 1280 (%v):\n%s", err, out)
	}
	cfg := interopConfig()
	cfg.Auth, cfg.PSK, cfg.AddKE = "psk", NewSecret(psk), []string{"mlkem1024"}
	s := env.session(t, cfg)
	if err := env.do(t, func() error { return s.Establish(ctx) }); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.State != "established" || len(st.AddKE) != 1 || st.AddKE[0] != "mlkem1024" {
		t.Fatalf("status %+v", st)
	}
	sas := env.listSAs(t, ctx)
	mustContain(t, "list-sas", sas, ikeLine(s.ike), "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_1024")
	mustContain(t, "CHILD_SA", childBlock(sas, s.children[0]), "INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256")

	// Ours: charon got IKE_INTERMEDIATE as encrypted fragments and
	// reassembled them; every datagram we sent fitted the link (charon
	// counts the IKE message: UDP, IP and the non-ESP marker add 32 bytes).
	// charon's worker threads may log the fragments in any order.
	ours := env.waitLog(t, regexp.MustCompile(`parsed IKE_INTERMEDIATE request 1 \[ EF\(\d/\d\) \]`))
	for i := 1; i <= max(len(ours), 2); i++ {
		if !slices.ContainsFunc(ours, func(m string) bool { return strings.Contains(m, fmt.Sprintf("EF(%d/%d)", i, len(ours))) }) {
			t.Errorf("charon did not see fragment %d of %d of our IKE_INTERMEDIATE request: %q", i, len(ours), ours)
		}
	}
	env.waitLog(t, regexp.MustCompile(`received fragment #\d of \d, reassembled fragmented IKE message`))
	sizes := regexp.MustCompile(`received packet: from 192\.0\.2\.2\[\d+\] to 192\.0\.2\.1\[4500\] \((\d+) bytes\)`).FindAllStringSubmatch(env.edge.Log(), -1)
	if len(sizes) < 3 {
		t.Errorf("charon logged %d packets from us on port 4500, want IKE_INTERMEDIATE fragments and IKE_AUTH", len(sizes))
	}
	for _, m := range sizes {
		if n, _ := strconv.Atoi(m[1]); n+32 > 1280 {
			t.Errorf("we sent a %d-byte datagram over a 1280-byte MTU: %s", n+32, m[0])
		}
	}
	// Theirs: charon split its IKE_INTERMEDIATE response, and we could only
	// have completed the exchange by reassembling it.
	env.waitLog(t, regexp.MustCompile(`splitting IKE message \(\d+ bytes\) into \d fragments`))
	env.waitLog(t, regexp.MustCompile(`generating IKE_INTERMEDIATE response 1 \[ EF\(1/\d\) \]`))
}
