package ike

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
	vnetns "github.com/vishvananda/netns"
)

// Addresses of the interop topology: our initiator in a branch namespace on
// the WAN link, strongSwan in the edge site's gateway namespace.
const (
	interopBranchWAN = "192.0.2.2"
	interopBranchLAN = "198.18.1.0/24"
)

// needEdge skips the real-strongSwan tests under -short only. Without root
// (namespaces, mounts, chroot) they fail: a full run must not pass silently
// without its interop checks.
func needEdge(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("real strongSwan edge: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("real strongSwan edge: needs root for namespaces, mounts and chroot (use -short to skip)")
	}
}

// interopEnv is one branch namespace wired to one strongSwan edge.
type interopEnv struct {
	branch *netns.NS
	site   *edge.Site // site.GW is the edge's namespace
	edge   *edge.Edge
	mem    *xfrm.Memory
}

// envConfig shapes the topology; the edge options come from the test.
type envConfig struct {
	mtu int // WAN veth MTU, 0 keeps 1500
}

// startInterop builds the namespaces and starts strongSwan with eo (NS and
// Cache filled in here). Everything is torn down by t.Cleanup, pass or fail,
// and a failed test gets charon's log.
func startInterop(t testing.TB, ctx context.Context, ec envConfig, eo edge.Options) *interopEnv {
	t.Helper()
	cache, err := edge.NewCache(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	branch, err := netns.New(ctx, "brike")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := branch.Close(); err != nil {
			t.Errorf("closing branch namespace: %v", err)
		}
	})
	site, err := edge.NewSite(ctx, edge.SiteConfig{Peer: branch, PeerAddr: interopBranchWAN + "/24", MTU: ec.mtu})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := site.Close(); err != nil {
			t.Errorf("closing edge site: %v", err)
		}
	})
	eo.NS, eo.Cache = site.GW, cache
	if eo.LocalAddrs == "" {
		eo.LocalAddrs = edge.EdgeWANAddr
	}
	e, err := edge.Start(ctx, eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Read before Stop: a charon that died during the test is a
		// failure even when every assertion before it passed.
		running := e.Running()
		if err := e.Stop(); err != nil {
			t.Errorf("stopping strongSwan: %v", err)
		}
		if !running {
			t.Errorf("charon was no longer running at the end of the test")
		}
		if t.Failed() {
			t.Logf("charon log:\n%s", e.Log())
		}
	})
	return &interopEnv{branch: branch, site: site, edge: e, mem: xfrm.NewMemory()}
}

// interopConfig is a tunnel towards the edge's default child.
func interopConfig() *Config {
	return &Config{
		LocalID: "branch1.example", RemoteID: "edge.example", Remote: edge.EdgeWANAddr,
		LocalSubnets:  []netip.Prefix{netip.MustParsePrefix(interopBranchLAN)},
		RemoteSubnets: []netip.Prefix{netip.MustParsePrefix(edge.DCNet)},
	}
}

// interopChild is the edge side of interopConfig's tunnel. esp adds the
// key exchanges strongSwan accepts for Child SA rekeys.
func interopChild(esp string) []edge.Child {
	return []edge.Child{{LocalTS: []string{edge.DCNet}, RemoteTS: []string{interopBranchLAN}, ESPProposals: []string{esp}}}
}

// session is a Session recording into env.mem, logging to the test and
// closed by t.Cleanup.
func (env *interopEnv) session(t *testing.T, cfg *Config) *Session {
	t.Helper()
	return env.sessionWith(t, cfg, Options{RetransmitBase: 500 * time.Millisecond, RetransmitTries: 4})
}

// sessionWith is session with the timing knobs of opt; its Installer and
// Logger are set here.
func (env *interopEnv) sessionWith(t *testing.T, cfg *Config, opt Options) *Session {
	t.Helper()
	opt.Installer, opt.Logger = env.mem, slog.New(slog.NewTextHandler(t.Output(), nil))
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// do runs f in the branch namespace: the sockets Establish opens there
// stay there.
func (env *interopEnv) do(t testing.TB, f func() error) error {
	t.Helper()
	return inNS(t, env.branch, f)
}

// listSAs is `swanctl --list-sas`, failing the test when charon is gone.
func (env *interopEnv) listSAs(t testing.TB, ctx context.Context) string {
	t.Helper()
	sas, err := env.edge.ListSAs(ctx)
	if err != nil {
		t.Fatalf("swanctl --list-sas: %v", err)
	}
	return sas
}

// inNS runs f on a thread inside ns and moves that thread back to our own
// namespace afterwards, so that the test process never counts as a member
// of ns (netns.Close kills the members).
func inNS(t testing.TB, ns *netns.NS, f func() error) error {
	t.Helper()
	home, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	return ns.Do(func() error {
		defer vnetns.Set(home)
		return f()
	})
}

func mustContain(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}
