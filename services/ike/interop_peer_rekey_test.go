package ike

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
)

// TestInteropEdgeRekeys: strongSwan 6.1 with short rekey times (ours are
// the long defaults) rekeys the Child SA and the IKE SA itself, each with
// X25519 + ML-KEM-768 (CREATE_CHILD_SA + IKE_FOLLOWUP_KE). We answer both
// as the responder of those exchanges while maintain runs, and the tunnel
// stays up on the SAs the edge created.
func TestInteropEdgeRekeys(t *testing.T) {
	needEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const psk = "interop-edge-rekey-psk-0123456789"
	children := interopChild("aes256gcm16-x25519-ke1_mlkem768")
	// swanctl's life_time is rekey_time + 10%, in whole seconds: below 10 s
	// the SA would expire before its rekey.
	children[0].RekeyTime = 10 * time.Second
	env := startInterop(t, ctx, envConfig{}, edge.Options{
		Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
		Auth:      edge.Auth{PSK: psk},
		RekeyTime: 15 * time.Second,
		Children:  children,
	})
	cfg := interopConfig()
	cfg.Auth, cfg.PSK = "psk", NewSecret(psk)
	s := env.session(t, cfg)
	if err := env.do(t, func() error { return s.Establish(ctx) }); err != nil {
		t.Fatal(err)
	}
	first := s.Status()
	if first.State != "established" || len(first.Children) != 1 {
		t.Fatalf("status %+v", first)
	}
	dropped := first.Dropped

	// maintain answers the edge; the sockets already live in the branch
	// namespace, so it needs no namespace of its own.
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.maintain(mctx) }()
	stopped := false
	stopMaintain := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != context.Canceled {
				t.Errorf("maintain: %v", err)
			}
		}
	}
	defer stopMaintain()

	wait := func(what string, d time.Duration, re *regexp.Regexp) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		if _, err := env.edge.WaitLog(wctx, re); err != nil {
			t.Fatalf("%s: charon log: %v", what, err)
		}
	}
	// The edge's Child SA rekey (due after 9-10 s), then its IKE SA rekey
	// (after 13.5-15 s, well before the next Child SA rekey), each with an IKE_FOLLOWUP_KE for ML-KEM-768, and the
	// deletes of what they replaced.
	wait("child rekey", 20*time.Second, regexp.MustCompile(`rekeyed CHILD_SA net\{1\} with SPIs [0-9a-f]+_i [0-9a-f]+_o with net\{2\}`))
	wait("child rekey's old SA", 5*time.Second, regexp.MustCompile(`closing CHILD_SA net\{1\}`))
	wait("IKE rekey", 15*time.Second, regexp.MustCompile(`IKE_SA dc\[2\] rekeyed between`))
	wait("IKE rekey's delete", 5*time.Second, regexp.MustCompile(`deleting IKE_SA dc\[1\]`))
	wait("IKE rekey's delete", 5*time.Second, regexp.MustCompile(`<dc\|1> IKE_SA deleted`))
	log := env.edge.Log()
	t.Logf("charon:\n%s", strings.Join(regexp.MustCompile(`.*(IKE_FOLLOWUP_KE|CREATE_CHILD_SA|rekeyed|IKE_SA deleted|deleting IKE_SA).*`).FindAllString(log, -1), "\n"))
	reqs := regexp.MustCompile(`generating IKE_FOLLOWUP_KE request \d+ \[ KE N\(ADD_KE\) \]`).FindAllString(log, -1)
	resps := regexp.MustCompile(`parsed IKE_FOLLOWUP_KE response \d+ \[ KE \]`).FindAllString(log, -1)
	if len(reqs) < 2 || len(resps) < 2 {
		t.Errorf("charon sent %d IKE_FOLLOWUP_KE requests and parsed %d responses, want at least 2 (child and IKE SA rekey)", len(reqs), len(resps))
	}
	if strings.Contains(log, "TEMPORARY_FAILURE") || strings.Contains(log, "NO_PROPOSAL_CHOSEN") {
		t.Errorf("we refused an edge rekey")
	}
	// Let the deletes and anything else in flight reach us, then look.
	time.Sleep(500 * time.Millisecond)
	stopMaintain()

	st := s.Status()
	if st.State != "established" || st.ChildRekeys < 1 || st.IKERekeys < 1 || len(st.Children) != 1 || st.Dropped != dropped {
		t.Fatalf("status after the edge's rekeys: %+v", st)
	}
	if st.SPIi == first.SPIi || st.Children[0].SPIIn == first.Children[0].SPIIn {
		t.Fatalf("SAs not replaced: before %+v, after %+v", first, st)
	}
	if n := len(env.mem.SAs()); n != 2 {
		t.Fatalf("%d SAs installed, want the new pair only", n)
	}
	sas := env.listSAs(t, ctx)
	t.Logf("after the edge's rekeys:\n%s", sas)
	// The edge created the IKE SA: it is the initiator, marked with *.
	mustContain(t, "list-sas after rekeys", sas, fmt.Sprintf("%s_i* %s_r", st.SPIi, st.SPIr),
		"AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768")
	if strings.Contains(sas, first.SPIi+"_i") {
		t.Errorf("the rekeyed IKE SA is still listed")
	}
	mustContain(t, "rekeyed CHILD_SA", childBlock(sas, childFromStatus(t, st.Children[0])),
		"INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/CURVE_25519/KE1_ML_KEM_768")
	// The tunnel is still up: an exchange of ours on the edge's IKE SA.
	if err := s.checkLiveness(ctx); err != nil {
		t.Errorf("liveness after the edge's rekeys: %v", err)
	}
}

func childFromStatus(t *testing.T, cs ChildStatus) *childSA {
	t.Helper()
	in, err1 := strconv.ParseUint(cs.SPIIn, 16, 32)
	out, err2 := strconv.ParseUint(cs.SPIOut, 16, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("child status %+v", cs)
	}
	return &childSA{spiIn: uint32(in), spiOut: uint32(out)}
}
