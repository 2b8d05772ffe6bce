package edge

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pair is two sites joined by a WAN link: the edge site (gateway 192.0.2.1,
// DC host 198.19.0.2) and a branch site (gateway 192.0.2.2, host 198.18.0.2).
type pair struct {
	edge, branch *Site
}

const branchHost = "198.18.0.2"

func newPair(t *testing.T, ctx context.Context) pair {
	t.Helper()
	edgeSite, err := NewSite(ctx, SiteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { edgeSite.Close() })
	branch, err := NewSite(ctx, SiteConfig{
		Prefix:  "br",
		LANAddr: "198.18.0.1/24", HostAddr: branchHost + "/24",
		WANAddr: "192.0.2.2/24",
		Peer:    edgeSite.GW, PeerAddr: EdgeWANAddr + "/24",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { branch.Close() })
	return pair{edge: edgeSite, branch: branch}
}

// responder and initiator options for the pair; auth is filled in by the caller.
func responderOpts(p pair, d Distro) Options {
	return Options{
		NS: p.edge.GW, Distro: d, Name: "dc",
		LocalAddrs: EdgeWANAddr,
		Children:   []Child{{LocalTS: []string{DCNet}, RemoteTS: []string{"198.18.0.0/24"}}},
	}
}

func initiatorOpts(p pair, d Distro) Options {
	return Options{
		NS: p.branch.GW, Distro: d, Name: "branch",
		LocalAddrs: "192.0.2.2", RemoteAddrs: EdgeWANAddr,
		Children: []Child{{LocalTS: []string{"198.18.0.0/24"}, RemoteTS: []string{DCNet}}},
	}
}

// TestTunnel proves the harness end to end with two real strongSwans: the
// hybrid handshake, CHILD_SAs installed through kernel-libipsec on both
// sides, and traffic between the hosts behind them flowing through the
// tunnel (the gateways have no other route between the LANs).
func TestTunnel(t *testing.T) {
	needRoot(t)
	cache := testCache(t)
	ca, err := NewCA(Ed25519, "pqbranch test CA")
	if err != nil {
		t.Fatal(err)
	}
	caEC, err := NewCA(ECDSAP256, "pqbranch test CA P-256")
	if err != nil {
		t.Fatal(err)
	}
	certAuth := func(t *testing.T, ca *CA, kt KeyType, id string) Auth {
		c, err := ca.Issue(kt, id)
		if err != nil {
			t.Fatal(err)
		}
		return Auth{Cert: c, CA: ca}
	}
	for _, tc := range []struct {
		name                 string
		responder, initiator Distro
		respAuth             func(t *testing.T) Auth
		initAuth             func(t *testing.T) Auth
		proposals            []string
		wantIKE              string
		wantIntermedia       bool
		fragmentSize         int            // initiator's charon.fragment_size
		wantSplit            *regexp.Regexp // initiator's log when IKE-fragmenting
	}{
		{
			name: "psk-mlkem768", responder: Forky, initiator: Forky,
			respAuth: func(*testing.T) Auth { return Auth{PSK: "tunnel test psk"} },
			initAuth: func(*testing.T) Auth { return Auth{PSK: "tunnel test psk"} },
			wantIKE:  "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768", wantIntermedia: true,
			// An ML-KEM-768 key does not fit strongSwan's default 1280 bytes.
			wantSplit: regexp.MustCompile(`splitting IKE message \(\d+ bytes\) into 2 fragments`),
		},
		{
			name: "ed25519-mlkem768", responder: Forky, initiator: Forky,
			respAuth: func(t *testing.T) Auth { return certAuth(t, ca, Ed25519, "dc.pqbranch.test") },
			initAuth: func(t *testing.T) Auth { return certAuth(t, ca, Ed25519, "branch.pqbranch.test") },
			wantIKE:  "KE1_ML_KEM_768", wantIntermedia: true,
		},
		{
			name: "ecdsa-mlkem1024", responder: Forky, initiator: Forky,
			respAuth:  func(t *testing.T) Auth { return certAuth(t, caEC, ECDSAP256, "192.0.2.1") },
			initAuth:  func(t *testing.T) Auth { return certAuth(t, caEC, ECDSAP256, "192.0.2.2") },
			proposals: []string{"aes256gcm16-prfsha384-ecp256-ke1_mlkem1024"},
			wantIKE:   "ECP_256/KE1_ML_KEM_1024", wantIntermedia: true,
			fragmentSize: 600,
			wantSplit:    regexp.MustCompile(`splitting IKE message \(\d+ bytes\) into [3-9] fragments`),
		},
		{
			// Debian 12's 5.9 against 6.1, classical: the bookworm root works.
			name: "bookworm-classical", responder: Forky, initiator: Bookworm,
			respAuth:  func(*testing.T) Auth { return Auth{PSK: "classical psk"} },
			initAuth:  func(*testing.T) Auth { return Auth{PSK: "classical psk"} },
			proposals: []string{"aes256gcm16-prfsha384-x25519"},
			wantIKE:   "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 10*time.Minute)
			p := newPair(t, ctx)
			ropts := responderOpts(p, tc.responder)
			ropts.Cache, ropts.Auth, ropts.Proposals = cache, tc.respAuth(t), tc.proposals
			iopts := initiatorOpts(p, tc.initiator)
			iopts.Cache, iopts.Auth, iopts.Proposals = cache, tc.initAuth(t), tc.proposals
			iopts.FragmentSize = tc.fragmentSize
			if ropts.Auth.Cert != nil {
				ropts.RemoteID, iopts.RemoteID = iopts.Auth.Cert.ID, ropts.Auth.Cert.ID
			}
			responder := startEdge(t, ctx, ropts)
			initiator := startEdge(t, ctx, iopts)

			start := time.Now()
			if err := initiator.Initiate(testCtx(t, 20*time.Second), "net"); err != nil {
				t.Fatalf("initiate: %v", err)
			}
			t.Logf("initiate to CHILD_SA: %s", time.Since(start).Round(time.Millisecond))
			for _, e := range []*Edge{initiator, responder} {
				sas, err := e.ListSAs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				mustContain(t, e.Name()+" list-sas", sas, tc.wantIKE, "ESTABLISHED", "INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256")
			}
			// The initiator's Initiate returned after IKE_AUTH, so the
			// responder has logged the whole exchange by now.
			intermediate := regexp.MustCompile(`parsed IKE_INTERMEDIATE request 1 \[ KE \]`)
			if tc.wantIntermedia {
				if _, err := responder.WaitLog(testCtx(t, 5*time.Second), intermediate); err != nil {
					t.Error(err)
				}
			} else if intermediate.MatchString(responder.Log()) {
				t.Errorf("classical handshake used IKE_INTERMEDIATE")
			}

			if tc.wantSplit != nil && !tc.wantSplit.MatchString(initiator.Log()) {
				t.Errorf("initiator log lacks %s", tc.wantSplit)
			}
			pingThrough(t, ctx, p, initiator)
		})
	}
}

// pingThrough pings the DC host from the branch host and checks that the
// packets were counted by the initiator's CHILD_SA.
func pingThrough(t *testing.T, ctx context.Context, p pair, initiator *Edge) {
	t.Helper()
	before, err := initiator.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inBefore, outBefore := childPackets(before)
	if out, err := p.branch.Host.Run(ctx, "ping", "-c3", "-i0.2", "-W2", DCAddr); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
	after, err := initiator.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in, out := childPackets(after)
	if in-inBefore < 3 || out-outBefore < 3 {
		t.Errorf("CHILD_SA counters moved by in %d out %d, want >= 3 each:\n%s", in-inBefore, out-outBefore, after)
	}
}

// TestRestart stops the responder's strongSwan and starts it again in the
// same namespace; the initiator can then bring the tunnel up again.
func TestRestart(t *testing.T) {
	needRoot(t)
	cache := testCache(t)
	ctx := testCtx(t, 10*time.Minute)
	p := newPair(t, ctx)
	ropts, iopts := responderOpts(p, Forky), initiatorOpts(p, Forky)
	ropts.Cache, iopts.Cache = cache, cache
	ropts.Auth, iopts.Auth = Auth{PSK: "restart"}, Auth{PSK: "restart"}
	responder, initiator := startEdge(t, ctx, ropts), startEdge(t, ctx, iopts)
	if err := initiator.Initiate(testCtx(t, 20*time.Second), "net"); err != nil {
		t.Fatal(err)
	}
	pingThrough(t, ctx, p, initiator)

	oldPID := responder.PID()
	start := time.Now()
	if err := responder.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %s", time.Since(start).Round(time.Millisecond))
	if responder.PID() == oldPID || !responder.Running() {
		t.Fatalf("after Restart: pid %d (was %d), running %v", responder.PID(), oldPID, responder.Running())
	}
	if alive(oldPID) {
		t.Errorf("old charon %d still alive after Restart", oldPID)
	}
	// The graceful stop deleted the IKE SA, so the initiator forgot it.
	if _, err := initiator.WaitLog(ctx, regexp.MustCompile(`received DELETE for IKE_SA`)); err != nil {
		t.Fatal(err)
	}
	if sas, err := responder.ListSAs(ctx); err != nil || strings.Contains(sas, "ESTABLISHED") {
		t.Fatalf("fresh responder already has SAs (%v):\n%s", err, sas)
	}
	if err := initiator.Initiate(testCtx(t, 20*time.Second), "net"); err != nil {
		t.Fatal(err)
	}
	pingThrough(t, ctx, p, initiator)
	if n := strings.Count(responder.Log(), "SIGTERM received"); n != 1 {
		t.Errorf("log shows %d shutdowns, want 1 (it must span restarts)", n)
	}

	// An abrupt stop: the peer gets no DELETE.
	start = time.Now()
	if err := responder.StopCharon(ctx, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("StopCharon(kill) took %s", time.Since(start).Round(time.Millisecond))
	if responder.Running() || responder.PID() != 0 {
		t.Fatal("charon still running after StopCharon")
	}
	if err := responder.StartCharon(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := responder.Version(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIperfThroughTunnel pushes TCP through the hybrid tunnel with iperf3
// from the forky root, as the benchmarks do, and reports the throughput.
func TestIperfThroughTunnel(t *testing.T) {
	needRoot(t)
	cache := testCache(t)
	ctx := testCtx(t, 5*time.Minute)
	p := newPair(t, ctx)
	ropts, iopts := responderOpts(p, Forky), initiatorOpts(p, Forky)
	ropts.Cache, iopts.Cache = cache, cache
	ropts.Auth, iopts.Auth = Auth{PSK: "iperf"}, Auth{PSK: "iperf"}
	responder, initiator := startEdge(t, ctx, ropts), startEdge(t, ctx, iopts)
	if err := initiator.Initiate(testCtx(t, 20*time.Second), "net"); err != nil {
		t.Fatal(err)
	}
	server := responder.CommandIn(ctx, p.edge.Host, "iperf3", "-s", "-1", "-B", DCAddr)
	var serverOut strings.Builder
	server.Stdout, server.Stderr = &serverOut, &serverOut
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer server.Process.Kill()
	var out []byte
	var err error
	for i := 0; i < 20; i++ { // the server needs a moment to listen
		out, err = initiator.CommandIn(ctx, p.branch.Host, "iperf3", "-c", DCAddr, "-t", "2", "-f", "m").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Connection refused") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("iperf3 client: %v\n%s\nserver:\n%s", err, out, serverOut.String())
	}
	m := regexp.MustCompile(`([\d.]+) Mbits/sec.*receiver`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no receiver throughput in iperf3 output:\n%s", out)
	}
	t.Logf("TCP through X25519+ML-KEM-768 tunnel (kernel-libipsec both ends): %s Mbit/s", m[1])
	sas, err := initiator.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in, outPkts := childPackets(sas); in < 100 || outPkts < 100 {
		t.Errorf("iperf3 traffic not in the CHILD_SA counters (in %d, out %d):\n%s", in, outPkts, sas)
	}
}
