package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// fleetRig is a release repository and a report endpoint with its
// controller, over one TLS server: "/repo/" serves the repository's files,
// report.Path takes reports.
type fleetRig struct {
	dir     string
	ctl     *fleet.Controller
	st      store.Store
	srv     *httptest.Server
	targets atomic.Int32 // requests for targets (bundles)
}

func newFleetRig(t *testing.T, now func() time.Time) *fleetRig {
	t.Helper()
	f := &fleetRig{dir: filepath.Join(t.TempDir(), "repo")}
	signers, roles := repo.Signers{}, map[repo.Role]repo.RoleConfig{}
	for _, role := range repo.Roles { // one key for every role: this tests the device, not the roles
		signers[role] = []*hybrid.PrivateKey{testKey()}
		roles[role] = repo.RoleConfig{Keys: []hybrid.PublicKey{testKey().Public()}, Threshold: 1}
	}
	r, err := repo.Init(f.dir, roles, signers, now, repo.DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if f.st, err = store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "fleet.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	f.ctl = &fleet.Controller{Store: f.st, Repo: r, Signers: signers, Now: now}
	mux := http.NewServeMux()
	files := http.StripPrefix("/repo/", http.FileServer(http.Dir(f.dir)))
	mux.HandleFunc("/repo/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/repo/targets/") {
			f.targets.Add(1)
		}
		files.ServeHTTP(w, r)
	})
	mux.Handle(report.Path, (&fleet.Server{Store: f.st, Now: now}).Handler())
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fleetRig) root(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join(f.dir, repo.RootFile(1)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fleetRig) options(t *testing.T) func(*Options) {
	root := f.root(t)
	return func(o *Options) {
		o.Repository, o.RepoRoot, o.ReportURL = f.srv.URL+"/repo/", root, f.srv.URL
		o.CA = (&bundleServer{Server: f.srv}).pool()
	}
}

// publish writes b as a bundle file and publishes it with a plan whose
// canary wave is the rig's device.
func (f *fleetRig) publish(t *testing.T, b []byte, rel release.Release) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "update.pqb")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	plan := rollout.Plan{Waves: []rollout.Wave{
		{Name: "canary", Devices: []string{"branch-7"}, Soak: rollout.Duration(time.Hour), MaxFailure: 0.5},
		{Name: "everyone", Percent: 100, Soak: rollout.Duration(time.Hour)},
	}}
	name, err := f.ctl.Publish(context.Background(), path, rel, plan)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestRepositoryRollout: the agent checks in with a repository; it stays
// while its wave is closed and fetches nothing, installs once the wave
// opens, and after the commit its signed report reaches the controller,
// retried until the device is enrolled.
func TestRepositoryRollout(t *testing.T) {
	r := newRig(t)
	f := newFleetRig(t, r.clk.Now)
	p := payload(5, 20*testChunk)
	b, v2 := makeBundle(t, rel("0.2.0", 3, 2000), p)
	f.publish(t, b, v2)

	a, stop := r.run("A", f.options(t))
	waitFor(t, "a check-in", func() bool { return strings.Contains(a.Status().Offer, "not open") })
	st := a.Status()
	if st.State != Idle || f.targets.Load() != 0 || st.Repository != f.srv.URL+"/repo/" {
		t.Fatalf("wave closed: state %s, %d target fetches, repository %q; want idle, none", st.State, f.targets.Load(), st.Repository)
	}
	pub, err := hex.DecodeString(st.ReportKey)
	if err != nil || len(pub) != ed25519.PublicKeySize || st.DeviceID != "branch-7" {
		t.Fatalf("status identity: device %q key %q", st.DeviceID, st.ReportKey)
	}

	if _, err := f.ctl.Command(context.Background(), "0.2.0", rollout.Start, "test"); err != nil {
		t.Fatal(err)
	}
	if err := a.Do(context.Background(), Request{Cmd: CmdCheck}); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, Rebooting) // no window: staged, then armed at once
	if f.targets.Load() == 0 {
		t.Fatal("installed without fetching the target")
	}
	if !strings.HasPrefix(a.Status().Offer, "install 0.2.0") {
		t.Errorf("offer %q", a.Status().Offer)
	}
	stop()

	if s := r.bootNext(); s != "B" {
		t.Fatalf("firmware booted %s; want B", s)
	}
	r.inSlot["B"] = v2
	b2, _ := r.run("B", f.options(t))
	waitState(t, b2, Committed)
	// Not enrolled yet: refused, kept, retried.
	waitFor(t, "a refused report", func() bool { return b2.Status().ReportError != "" })
	if n := b2.Status().ReportsPending; n != 1 {
		t.Fatalf("%d reports pending; want 1", n)
	}
	if err := f.st.Enroll(context.Background(), store.Device{ID: "branch-7", Board: board, Key: pub}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry timer", func() bool { return r.clk.pending() > 0 })
	r.clk.Add(reportRetryMin)
	waitFor(t, "the report sent", func() bool { return b2.Status().ReportsPending == 0 })
	out, err := f.st.Outcomes(context.Background(), "0.2.0")
	if err != nil || out["branch-7"] != report.Committed {
		t.Fatalf("outcomes %v %v; want branch-7 committed", out, err)
	}
	fs, err := f.ctl.Status(context.Background(), "0.2.0")
	if err != nil || fs.Waves[0].Updated != 1 {
		t.Fatalf("rollout status %+v %v; want the canary updated", fs, err)
	}
	// state.json is written just after the in-memory queue shrinks.
	waitFor(t, "the sent report off the queue in state.json", func() bool {
		ps := r.state()
		return ps.ReportSeq == 1 && len(ps.Reports) == 0
	})
}

// TestRepositorySwappedTarget: the repository's file for a release holds
// another release's bundle, correctly signed by the release key. The
// header names the wrong release, so the agent refuses it before its
// payload, with the targets metadata's error.
func TestRepositorySwappedTarget(t *testing.T) {
	r := newRig(t)
	f := newFleetRig(t, r.clk.Now)
	p := payload(6, 8*testChunk)
	good, v2 := makeBundle(t, rel("0.2.0", 3, 2000), p)
	other, _ := makeBundle(t, rel("0.2.1", 3, 2100), p)
	name := f.publish(t, good, v2)
	if _, err := f.ctl.Command(context.Background(), "0.2.0", rollout.Start, "test"); err != nil {
		t.Fatal(err)
	}
	tg, err := f.ctl.Repo.Targets()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, filepath.FromSlash(repo.TargetPath(name, tg.Targets[name]))), other, 0o644); err != nil {
		t.Fatal(err)
	}
	a, _ := r.run("A", f.options(t))
	waitFor(t, "the refusal", func() bool { return a.Status().State == Failed })
	st := a.Status()
	if !strings.Contains(st.Reason, "0.2.1") || !strings.Contains(st.Reason, "targets.json lists 0.2.0") {
		t.Fatalf("reason %q; want the swapped release named", st.Reason)
	}
	if r.boot.count("SetNext") != 0 {
		t.Error("a swapped bundle armed a trial")
	}
}
