package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	ctl  *Controller
	st   store.Store
	now  time.Time
	keys map[string]ed25519.PrivateKey
}

func newEnv(t *testing.T, devices int) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{now: t0, keys: map[string]ed25519.PrivateKey{}}
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	s, roles := repo.Signers{}, map[repo.Role]repo.RoleConfig{}
	for _, r := range repo.Roles {
		k, _ := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
		s[r] = []*hybrid.PrivateKey{k}
		roles[r] = repo.RoleConfig{Keys: []hybrid.PublicKey{k.Public()}, Threshold: 1}
	}
	now := func() time.Time { return e.now }
	rp, err := repo.Init(filepath.Join(dir, "repo"), roles, s, now, repo.DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	e.ctl = &Controller{Store: st, Repo: rp, Signers: s, Now: now}
	var devs []store.Device
	for i := range devices {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		id := "dev-" + string(rune('a'+i))
		e.keys[id] = key
		devs = append(devs, store.Device{ID: id, Board: "qemu", Key: pub})
	}
	if err := st.Enroll(ctx, devs...); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b.pqb")
	os.WriteFile(b, []byte("bundle"), 0o644)
	plan := rollout.DefaultPlan([]string{"dev-a", "dev-b", "dev-c", "dev-d"}, time.Hour)
	plan.Waves[0].MaxFailure = 0.25
	if _, err := e.ctl.Publish(ctx, b, release.Release{Version: "2.0", Board: "qemu", Profile: "prod", Epoch: 2}, plan); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestForgedReport: the endpoint takes a device's signed report, and
// refuses one signed by anyone else, a replay, and an unenrolled device,
// each with a clear error the sender sees.
func TestForgedReport(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	srv := httptest.NewServer((&Server{Store: e.st}).Handler())
	defer srv.Close()
	rep := report.Report{Seq: 1, Board: "qemu", From: "1.0", To: "2.0", Running: "2.0", Outcome: report.Committed}

	good := &report.Sender{URL: srv.URL, Device: "dev-a", Key: e.keys["dev-a"]}
	if err := good.Send(ctx, rep); err != nil {
		t.Fatal(err)
	}
	// dev-b's key reporting success for dev-a.
	forger := &report.Sender{URL: srv.URL, Device: "dev-a", Key: e.keys["dev-b"]}
	r2 := rep
	r2.Seq = 2
	err := forger.Send(ctx, r2)
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), "report for device dev-a: report signature does not verify with the device's enrolled key") {
		t.Errorf("forged report: %v", err)
	}
	if err := good.Send(ctx, rep); err == nil || !strings.Contains(err.Error(), "HTTP 409") || !strings.Contains(err.Error(), "replayed report") {
		t.Errorf("replayed report: %v", err)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	if err := (&report.Sender{URL: srv.URL, Device: "dev-z", Key: stranger}).Send(ctx, rep); err == nil || !strings.Contains(err.Error(), "device is not enrolled") {
		t.Errorf("unenrolled device: %v", err)
	}
	oc, _ := e.st.Outcomes(ctx, "2.0")
	if len(oc) != 1 || oc["dev-a"] != report.Committed {
		t.Errorf("stored outcomes %v; want only dev-a's genuine report", oc)
	}
}

func addReport(t *testing.T, e *env, dev string, seq uint64, o report.Outcome) {
	t.Helper()
	if err := e.st.AddReport(context.Background(), report.Report{Device: dev, Seq: seq, To: "2.0", Outcome: o}, []byte("{}"), e.now); err != nil {
		t.Fatal(err)
	}
}

// TestControllerHalts: the controller opens the next wave only after the
// soak, halts on its own when a wave's failures pass the threshold, says
// why in the signed state and the event log, and an abort stays where it is.
func TestControllerHalts(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 8)
	if _, err := e.ctl.Command(ctx, "2.0", rollout.Start, ""); err != nil {
		t.Fatal(err)
	}
	addReport(t, e, "dev-a", 1, report.Committed)
	addReport(t, e, "dev-b", 1, report.RolledBack)
	e.now = t0.Add(30 * time.Minute)
	if ch, err := e.ctl.Tick(ctx); err != nil || len(ch) != 0 {
		t.Fatalf("tick before the soak: %v %v", ch, err)
	}
	addReport(t, e, "dev-c", 1, report.RolledBack) // 2 of 4 > 25%
	ch, err := e.ctl.Tick(ctx)
	if err != nil || len(ch) != 1 || ch[0].To.Phase != rollout.Halted {
		t.Fatalf("tick after the second failure: %+v %v", ch, err)
	}
	st, err := e.ctl.Status(ctx, "2.0")
	if err != nil {
		t.Fatal(err)
	}
	if st.Halted != `wave "canary": 2 of 4 devices failed (50.0%; at most 25.0% allowed)` {
		t.Errorf("status says %q", st.Halted)
	}
	if w := st.Waves[0]; w.Eligible != 4 || w.Updated != 1 || w.Failed != 2 || w.Silent != 1 {
		t.Errorf("canary wave %+v", w)
	}
	if last := st.Events[len(st.Events)-1]; !strings.Contains(last.Note, "controller halted the rollout") {
		t.Errorf("last event %q", last.Note)
	}
	// Halted stays halted, however long it soaks.
	e.now = t0.Add(48 * time.Hour)
	if ch, err := e.ctl.Tick(ctx); err != nil || len(ch) != 0 {
		t.Errorf("tick on a halted rollout: %v %v", ch, err)
	}
	if _, err := e.ctl.Command(ctx, "2.0", rollout.Abort, "bad build"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.Command(ctx, "2.0", rollout.Resume, ""); !errors.Is(err, rollout.ErrTransition) {
		t.Errorf("resume after abort: %v", err)
	}
	tg, _ := e.ctl.Repo.Targets()
	if _, f, _ := tg.Release("2.0"); f.Custom.Rollout.Phase != rollout.Aborted || f.Custom.Rollout.Reason != "bad build" {
		t.Errorf("signed state %+v", f.Custom.Rollout)
	}
}

// TestControllerAdvances: a healthy canary opens the 1% wave after its soak
// and not before.
func TestControllerAdvances(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 8)
	e.ctl.Command(ctx, "2.0", rollout.Start, "")
	for _, d := range []string{"dev-a", "dev-b", "dev-c", "dev-d"} {
		addReport(t, e, d, 1, report.Committed)
	}
	e.now = t0.Add(59 * time.Minute)
	if ch, _ := e.ctl.Tick(ctx); len(ch) != 0 {
		t.Fatalf("opened before the soak: %+v", ch)
	}
	e.now = t0.Add(time.Hour)
	ch, err := e.ctl.Tick(ctx)
	if err != nil || len(ch) != 1 || ch[0].To.Open != 2 || ch[0].To.Phase != rollout.Running {
		t.Fatalf("after the soak: %+v %v", ch, err)
	}
}
