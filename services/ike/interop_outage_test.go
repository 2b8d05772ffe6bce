package ike

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Outage and loss tests against strongSwan 6.1: a lossy path, a path down
// for longer than dead-peer detection, and charon killed in the middle of
// its own rekey. Each asserts how long the tunnel takes to recover, that the
// edge is left with exactly one IKE SA and one Child SA per selector pair,
// and that no IKE SA was ever classical-only, although the edge would
// accept one (edgeProposals): only our side keeps ML-KEM in.

// edgeProposals: the edge prefers X25519 + ML-KEM-768 but also accepts
// classical X25519, so that a downgrade by our side would succeed and show.
var edgeProposals = []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16-prfsha384-x25519"}

// outageTiming are short retransmission and reconnect times, so that the
// recovery bounds below, which derive from them, are seconds.
var outageTiming = Options{
	RetransmitBase:  250 * time.Millisecond,
	RetransmitMax:   time.Second,
	RetransmitTries: 4,
	ReconnectMin:    500 * time.Millisecond,
	ReconnectMax:    2 * time.Second,
}

// faultTable is the nftables table the path faults live in.
const faultTable = "pqb_wanfault"

// dropOnPath installs nftables rules that drop UDP between the branch and
// the edge: toBranch in the branch namespace's input hook, toEdge in the
// edge's ("" installs nothing on that side). Dropping on input makes a
// packet vanish on the path; an output-hook drop would fail the sender's
// sendto instead, which is not what a broken link does. It replaces any
// fault installed before.
func (env *interopEnv) dropOnPath(t *testing.T, ctx context.Context, toBranch, toEdge string) {
	t.Helper()
	for _, side := range []struct {
		ns    *netns.NS
		from  string
		match string
	}{{env.branch, edge.EdgeWANAddr, toBranch}, {env.site.GW, interopBranchWAN, toEdge}} {
		script := fmt.Sprintf("add table inet %[1]s\ndelete table inet %[1]s\n", faultTable)
		if side.match != "" {
			script += fmt.Sprintf("table inet %s {\n\tchain in {\n\t\ttype filter hook input priority -10;\n\t\tip saddr %s meta l4proto udp %s counter drop\n\t}\n}\n",
				faultTable, side.from, side.match)
		}
		nft(t, ctx, side.ns, script)
	}
}

// clearPath removes the faults.
func (env *interopEnv) clearPath(t *testing.T, ctx context.Context) { env.dropOnPath(t, ctx, "", "") }

// pathDrops returns how many packets the fault rules dropped towards the
// branch and towards the edge.
func (env *interopEnv) pathDrops(t *testing.T, ctx context.Context) (toBranch, toEdge int) {
	t.Helper()
	count := func(ns *netns.NS) int {
		out := nft(t, ctx, ns, fmt.Sprintf("add table inet %[1]s\nlist table inet %[1]s\n", faultTable))
		m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return count(env.branch), count(env.site.GW)
}

// fastRetransmits restarts charon with retransmission timing like ours in
// outageTiming (0.5 s, growing by 1.4, 8 tries) instead of strongSwan's
// 4 s, 7.2 s, 13 s...: on a lossy path the edge's own exchanges would
// otherwise take minutes. Call it before the tunnel is established.
func (env *interopEnv) fastRetransmits(t *testing.T, ctx context.Context) {
	t.Helper()
	conf := "charon {\n\tretransmit_timeout = 0.5\n\tretransmit_base = 1.4\n\tretransmit_tries = 8\n}\n"
	if err := os.WriteFile(filepath.Join(env.edge.Root(), "etc/strongswan.d/zz-retransmit.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := env.edge.StopCharon(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := env.edge.StartCharon(ctx); err != nil {
		t.Fatal(err)
	}
}

// nft runs an nftables script in ns.
func nft(t *testing.T, ctx context.Context, ns *netns.NS, script string) string {
	t.Helper()
	cmd := ns.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft in %s: %v: %s\nscript:\n%s", ns.Name, err, out, script)
	}
	return string(out)
}

// runInBranch runs s.Run in the branch namespace until the test ends (or
// stop is called); stop returns Run's error.
func (env *interopEnv) runInBranch(t *testing.T, ctx context.Context, s *Session) (stop func() error) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- env.branch.Do(func() error { return s.Run(rctx) }) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	// Registered after the session's own cleanup, so it runs first: Run
	// must have returned before the session is closed under it.
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

// waitStatus polls s until ok holds, for at most d.
func waitStatus(ctx context.Context, s *Session, d time.Duration, ok func(Status) bool) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		st := s.Status()
		if ok(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("status %+v after %v: %w", st, d, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hybridEstablished: up with a Child SA on an X25519 + ML-KEM-768 IKE SA.
func hybridEstablished(st Status) bool {
	return st.State == StateEstablished.String() && len(st.Children) > 0 && len(st.AddKE) == 1 && st.AddKE[0] == "mlkem768"
}

// waitLogSince waits for re in what charon logged after the first from
// bytes of its log (the log spans restarts, so earlier lines must not
// count).
func (env *interopEnv) waitLogSince(t *testing.T, ctx context.Context, from int, d time.Duration, re *regexp.Regexp) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if log := env.edge.Log(); len(log) > from {
			if m := re.FindString(log[from:]); m != "" {
				return m
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("charon did not log %q within %v", re, d)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// edgeIKESA is one IKE SA of `swanctl --list-sas`, with its Child SAs.
type edgeIKESA struct {
	header, algorithms string
	children           []edgeChildSA
}

type edgeChildSA struct {
	header, local, remote string
}

var (
	listIKEHeader   = regexp.MustCompile(`^\S+: #\d+, `)
	listAlgorithms  = regexp.MustCompile(`^  [A-Z][A-Z0-9_/-]+$`)
	listChildHeader = regexp.MustCompile(`^  \S+: #\d+, reqid \d+, `)
	listLocalTS     = regexp.MustCompile(`^    local  (.+)$`)
	listRemoteTS    = regexp.MustCompile(`^    remote (.+)$`)
)

// parseListSAs takes `swanctl --list-sas` apart.
func parseListSAs(sas string) []edgeIKESA {
	var out []edgeIKESA
	for _, line := range strings.Split(sas, "\n") {
		switch {
		case listIKEHeader.MatchString(line):
			out = append(out, edgeIKESA{header: line})
		case len(out) == 0:
		case listAlgorithms.MatchString(line):
			out[len(out)-1].algorithms = strings.TrimSpace(line)
		case listChildHeader.MatchString(line):
			ike := &out[len(out)-1]
			ike.children = append(ike.children, edgeChildSA{header: strings.TrimSpace(line)})
		default:
			ike := &out[len(out)-1]
			if len(ike.children) == 0 {
				continue
			}
			c := &ike.children[len(ike.children)-1]
			if m := listLocalTS.FindStringSubmatch(line); m != nil {
				c.local = m[1]
			} else if m := listRemoteTS.FindStringSubmatch(line); m != nil {
				c.remote = m[1]
			}
		}
	}
	return out
}

// checkEdgeSAs waits up to 3 s (the edge deletes what INITIAL_CONTACT
// replaced in the background) for the edge to hold exactly one IKE SA, the
// session's, hybrid, with exactly one installed Child SA per selector pair,
// the session's. It fails the test with the listing otherwise.
func (env *interopEnv) checkEdgeSAs(t *testing.T, ctx context.Context, st Status) {
	t.Helper()
	var problems []string
	var sas string
	deadline := time.Now().Add(3 * time.Second)
	for {
		sas = env.listSAs(t, ctx)
		problems = edgeSAProblems(t, sas, st)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(problems) > 0 {
		t.Errorf("the edge's SAs are not exactly the tunnel's:\n  %s\nswanctl --list-sas:\n%s", strings.Join(problems, "\n  "), sas)
	}
}

func edgeSAProblems(t *testing.T, sas string, st Status) []string {
	var problems []string
	ikes := parseListSAs(sas)
	if len(ikes) != 1 {
		problems = append(problems, fmt.Sprintf("%d IKE SAs, want 1", len(ikes)))
	}
	for _, ike := range ikes {
		if !strings.Contains(ike.header, "ESTABLISHED") {
			problems = append(problems, "IKE SA not established: "+ike.header)
		}
		if !strings.Contains(ike.algorithms, "KE1_ML_KEM_768") {
			problems = append(problems, fmt.Sprintf("IKE SA without ML-KEM: %q", ike.algorithms))
		}
		pairs := map[string]int{}
		for _, c := range ike.children {
			pairs[c.local+" <-> "+c.remote]++
			if !strings.Contains(c.header, "INSTALLED") {
				problems = append(problems, "Child SA not installed: "+c.header)
			}
		}
		for pair, n := range pairs {
			if n != 1 {
				problems = append(problems, fmt.Sprintf("%d Child SAs for %s, want 1", n, pair))
			}
		}
		if want := edge.DCNet + " <-> " + interopBranchLAN; len(pairs) != 1 || pairs[want] == 0 {
			problems = append(problems, fmt.Sprintf("Child SA selector pairs %v, want only %s", pairs, want))
		}
	}
	if len(problems) > 0 {
		return problems
	}
	// And it is the session's: its IKE SPIs and its Child SA's.
	if !strings.Contains(ikes[0].header, st.SPIi+"_") || !strings.Contains(ikes[0].header, st.SPIr+"_") {
		problems = append(problems, fmt.Sprintf("the IKE SA is not the session's %s/%s: %s", st.SPIi, st.SPIr, ikes[0].header))
	}
	if len(st.Children) != 1 {
		problems = append(problems, fmt.Sprintf("the session has %d Child SAs, want 1", len(st.Children)))
	} else if childBlock(sas, childFromStatus(t, st.Children[0])) == "" {
		problems = append(problems, fmt.Sprintf("the Child SA is not the session's %+v", st.Children[0]))
	}
	return problems
}

// checkNeverClassical fails the test when charon ever selected an IKE
// proposal without ML-KEM: at establishment or at any rekey, ours or its.
func (env *interopEnv) checkNeverClassical(t *testing.T, wantAtLeast int) {
	t.Helper()
	selected := regexp.MustCompile(`selected proposal: IKE:\S+`).FindAllString(env.edge.Log(), -1)
	if len(selected) < wantAtLeast {
		t.Errorf("charon logged %d IKE proposal selections, want at least %d", len(selected), wantAtLeast)
	}
	for _, p := range selected {
		if !strings.Contains(p, "KE1_ML_KEM_768") {
			t.Errorf("an IKE SA was negotiated without ML-KEM: %s", p)
		}
	}
}

// TestInteropLossyPath drops every third packet in each direction while
// the tunnel is established, both ends rekey it, and the edge rekeys the
// IKE SA on its own: retransmissions on both sides and our cached
// responses carry every exchange through, and nothing is left behind.
func TestInteropLossyPath(t *testing.T) {
	needEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const psk = "interop-lossy-path-psk-0123456789"
	env := startInterop(t, ctx, envConfig{}, edge.Options{
		Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
		Auth: edge.Auth{PSK: psk}, Proposals: edgeProposals,
		Children: interopChild("aes256gcm16-x25519-ke1_mlkem768"),
	})
	env.fastRetransmits(t, ctx)
	cfg := interopConfig()
	cfg.Auth, cfg.PSK = "psk", NewSecret(psk)
	opt := outageTiming
	// A try needs the request and its answer through. The loss below never
	// takes two datagrams in a row of one direction, but charon's own
	// requests share the count: ten tries leave ample room.
	opt.RetransmitTries = 10
	// When charon's answer to our Delete of the IKE SA we rekeyed is lost,
	// charon, which forgot that SA on the first Delete, never answers a
	// retransmission: every try runs out. Keep that short.
	opt.RetransmitMax = 500 * time.Millisecond
	s := env.sessionWith(t, cfg, opt)
	// Deterministic rather than random loss, so that every run loses
	// packets, among them the very first IKE_SA_INIT in each direction.
	loss := "numgen inc mod 3 == 0"
	env.dropOnPath(t, ctx, loss, loss)

	start := time.Now()
	if err := env.do(t, func() error { return s.Establish(ctx) }); err != nil {
		t.Fatalf("Establish over a lossy path: %v", err)
	}
	t.Logf("established over the lossy path in %v", time.Since(start).Round(time.Millisecond))
	first := s.Status()
	if !hybridEstablished(first) {
		t.Fatalf("status %+v", first)
	}
	if err := env.do(t, func() error { return s.rekeyChild(ctx, s.children[0]) }); err != nil {
		t.Fatalf("our Child SA rekey over a lossy path: %v", err)
	}
	if err := env.do(t, func() error { return s.rekeyIKE(ctx) }); err != nil {
		t.Fatalf("our IKE SA rekey over a lossy path: %v", err)
	}

	// The edge rekeys the IKE SA (CREATE_CHILD_SA + IKE_FOLLOWUP_KE) while
	// maintain answers; charon retransmits what the path drops, and we
	// resend answers it did not get (on fragment 1 of a fragmented
	// request, as charon does).
	mctx, stopMaintain := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.maintain(mctx) }()
	from := len(env.edge.Log())
	if _, err := env.edge.Swanctl(ctx, "--rekey", "--ike", "dc"); err != nil {
		t.Fatal(err)
	}
	env.waitLogSince(t, ctx, from, 20*time.Second, regexp.MustCompile(`IKE_SA dc\[\d+\] rekeyed between`))
	// Let the edge's Delete of the IKE SA it replaced reach us.
	env.waitLogSince(t, ctx, from, 10*time.Second, regexp.MustCompile(`IKE_SA deleted`))
	time.Sleep(time.Second)
	stopMaintain()
	if err := <-done; err != context.Canceled {
		t.Fatalf("maintain over a lossy path: %v", err)
	}

	st := s.Status()
	toBranch, toEdge := env.pathDrops(t, ctx)
	t.Logf("dropped %d packets towards the branch, %d towards the edge; we retransmitted %d times; status %+v", toBranch, toEdge, st.Retransmits, st)
	if toBranch == 0 || toEdge == 0 || st.Retransmits == 0 {
		t.Fatalf("the path lost nothing (%d, %d) or we never retransmitted (%d): the test tested nothing", toBranch, toEdge, st.Retransmits)
	}
	if !hybridEstablished(st) || st.ChildRekeys != 1 || st.IKERekeys != 2 || st.SPIi == first.SPIi {
		t.Errorf("after the rekeys: status %+v", st)
	}
	if n := len(env.mem.SAs()); n != 2 {
		t.Errorf("%d SAs installed, want the one pair", n)
	}
	env.clearPath(t, ctx)
	env.checkEdgeSAs(t, ctx, st)
	// Establishment, our IKE rekey and the edge's.
	env.checkNeverClassical(t, 2)
}

// TestInteropOutageRecovery blocks the path until dead-peer detection has
// torn the tunnel down and a reconnect attempt has failed, then opens it.
// The tunnel must be back within a bound that follows from the
// retransmission and reconnect timing, and the edge, whose own DPD
// is off, must have dropped the IKE SA and Child SA of before the outage
// when our new IKE_AUTH said INITIAL_CONTACT.
func TestInteropOutageRecovery(t *testing.T) {
	needEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const psk = "interop-outage-psk-0123456789"
	env := startInterop(t, ctx, envConfig{}, edge.Options{
		Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
		Auth: edge.Auth{PSK: psk}, Proposals: edgeProposals,
		DPDDelay: -1, // the edge keeps a dead IKE SA: only INITIAL_CONTACT removes it
		Children: interopChild("aes256gcm16"),
	})
	cfg := interopConfig()
	cfg.Auth, cfg.PSK, cfg.DPDInterval = "psk", NewSecret(psk), "2s"
	s := env.sessionWith(t, cfg, outageTiming)
	env.runInBranch(t, ctx, s)
	first, err := waitStatus(ctx, s, 10*time.Second, hybridEstablished)
	if err != nil {
		t.Fatalf("tunnel not up: %v", err)
	}

	blocked := time.Now()
	env.dropOnPath(t, ctx, "meta l4proto udp", "meta l4proto udp")
	// DPD: a liveness check after 2 s of silence, given up after its
	// retransmissions (2.75 s).
	down, err := waitStatus(ctx, s, 15*time.Second, func(st Status) bool { return st.State != StateEstablished.String() })
	if err != nil {
		t.Fatalf("the tunnel still claims to be up with the path blocked: %v", err)
	}
	t.Logf("dead peer detected %v into the outage: %s (%s)", time.Since(blocked).Round(time.Millisecond), down.State, down.LastError)
	// Keep it blocked through a failed reconnect attempt, so that the
	// backoff has grown when the path comes back.
	time.Sleep(3 * time.Second)
	if toBranch, toEdge := env.pathDrops(t, ctx); toEdge == 0 {
		t.Fatalf("nothing of ours was dropped during the outage (%d, %d)", toBranch, toEdge)
	}
	from := len(env.edge.Log())
	env.clearPath(t, ctx)
	opened := time.Now()
	// Once the path is back, the next IKE_SA_INIT (at most one
	// retransmission gap or one reconnect backoff away) gets through.
	bound := outageTiming.RetransmitMax + outageTiming.ReconnectMax + 3*time.Second
	st, err := waitStatus(ctx, s, bound, func(st Status) bool { return hybridEstablished(st) && st.SPIi != first.SPIi })
	if err != nil {
		t.Fatalf("the tunnel did not recover within %v of the path coming back: %v", bound, err)
	}
	t.Logf("tunnel back %v after the path, %v after the outage began", time.Since(opened).Round(time.Millisecond), time.Since(blocked).Round(time.Millisecond))
	// strongSwan drops the old SAs at once, without a Delete exchange.
	env.waitLogSince(t, ctx, from, 2*time.Second, regexp.MustCompile(`destroying duplicate IKE_SA for peer 'branch1\.example', received INITIAL_CONTACT`))
	env.checkEdgeSAs(t, ctx, st)
	env.checkNeverClassical(t, 2)
}

// TestInteropEdgeRestartMidRekey kills charon between the CREATE_CHILD_SA
// and the IKE_FOLLOWUP_KE of its own IKE SA rekey and starts it again: the
// half-done exchange prompts a liveness check at once, which finds the SA
// gone, and the tunnel is re-established within a few seconds rather than
// at the next DPD interval or the end of the rekey's timeout.
func TestInteropEdgeRestartMidRekey(t *testing.T) {
	needEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const psk = "interop-restart-psk-0123456789"
	env := startInterop(t, ctx, envConfig{}, edge.Options{
		Name: "dc", LocalID: "edge.example", RemoteID: "branch1.example",
		Auth: edge.Auth{PSK: psk}, Proposals: edgeProposals,
		DPDDelay: -1,
		Children: interopChild("aes256gcm16"),
	})
	cfg := interopConfig()
	// DPD far away: recovery must come from the stalled rekey, not DPD.
	cfg.Auth, cfg.PSK, cfg.DPDInterval = "psk", NewSecret(psk), "5m"
	opt := outageTiming
	// The liveness check starts 2 x RetransmitBase after the stall: 1 s
	// leaves ample time to kill charon before it could answer.
	opt.RetransmitBase = 500 * time.Millisecond
	s := env.sessionWith(t, cfg, opt)
	env.runInBranch(t, ctx, s)
	first, err := waitStatus(ctx, s, 10*time.Second, hybridEstablished)
	if err != nil {
		t.Fatalf("tunnel not up: %v", err)
	}

	// The edge's IKE_FOLLOWUP_KE requests never reach us (IKE exchange
	// type 44 at byte 18 of the IKE header, after UDP's 8 bytes and the
	// 4-byte non-ESP marker), so charon is reliably mid-rekey when killed.
	env.dropOnPath(t, ctx, "udp sport 4500 @th,240,8 44", "")
	from := len(env.edge.Log())
	if _, err := env.edge.Swanctl(ctx, "--rekey", "--ike", "dc"); err != nil {
		t.Fatal(err)
	}
	// Kill charon as soon as its first IKE_FOLLOWUP_KE is lost: we have
	// answered its CREATE_CHILD_SA and wait for the rest.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if toBranch, _ := env.pathDrops(t, ctx); toBranch > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no IKE_FOLLOWUP_KE of the edge's rekey was dropped within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := env.edge.StopCharon(ctx, false); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	env.waitLogSince(t, ctx, from, time.Second, regexp.MustCompile(`parsed CREATE_CHILD_SA response \d+ \[[^]]*N\(ADD_KE\)`))
	env.clearPath(t, ctx)
	if err := env.edge.StartCharon(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// The stall (1 s), a liveness check that times out (0.5+1+1+1 s), one
	// reconnect backoff and the handshake, counted from the kill.
	bound := 2*opt.RetransmitBase + 4*opt.RetransmitMax + opt.ReconnectMin + 3*time.Second
	st, err := waitStatus(ctx, s, bound-time.Since(killed), func(st Status) bool { return hybridEstablished(st) && st.SPIi != first.SPIi })
	if err != nil {
		t.Fatalf("the tunnel did not recover within %v of charon's kill: %v", bound, err)
	}
	t.Logf("tunnel back %v after charon was killed mid-rekey (%v after its restart)", time.Since(killed).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	env.checkEdgeSAs(t, ctx, st)
	env.checkNeverClassical(t, 2)
}
