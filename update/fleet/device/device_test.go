package device

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// fixture publishes one release with a canary of "canary-1" and serves the
// repository over HTTP on loopback.
func fixture(tb testing.TB, st rollout.State) (root []byte, url string) {
	tb.Helper()
	dir := tb.TempDir()
	s, roles := repo.Signers{}, map[repo.Role]repo.RoleConfig{}
	for _, r := range repo.Roles {
		k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		s[r] = []*hybrid.PrivateKey{k}
		roles[r] = repo.RoleConfig{Keys: []hybrid.PublicKey{k.Public()}, Threshold: 1}
	}
	rp, err := repo.Init(filepath.Join(dir, "repo"), roles, s, nil, repo.DefaultExpiry)
	if err != nil {
		tb.Fatal(err)
	}
	b := filepath.Join(dir, "b.pqb")
	os.WriteFile(b, make([]byte, 4096), 0o644)
	if _, err := rp.AddBundle(b, release.Release{Version: "2.0", Board: "qemu", Profile: "prod", Epoch: 2},
		rollout.DefaultPlan([]string{"canary-1"}, time.Hour), s); err != nil {
		tb.Fatal(err)
	}
	if err := rp.SetRollout("2.0", st, s); err != nil {
		tb.Fatal(err)
	}
	root, _ = rp.RootBytes()
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "repo"))))
	tb.Cleanup(srv.Close)
	return root, srv.URL
}

func TestCheck(t *testing.T) {
	root, url := fixture(t, rollout.State{Phase: rollout.Running, Open: 1, OpenedAt: time.Now()})
	for _, tc := range []struct {
		id     string
		action rollout.Action
	}{{"canary-1", rollout.Install}, {"someone-else", rollout.Stay}} {
		c, err := repo.NewClient(root, repo.ClientOptions{Fetcher: &repo.HTTPFetcher{Base: url}})
		if err != nil {
			t.Fatal(err)
		}
		ch := &Checker{Repo: c, Device: rollout.Device{ID: tc.id, Board: "qemu", Version: "1.0", Epoch: 1}}
		r, err := ch.Check(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Action != tc.action {
			t.Errorf("%s: %v (%s); want %v", tc.id, r.Action, r.Reason, tc.action)
		}
		if tc.action == rollout.Install && (r.TargetPath == "" || r.Target.Length != 4096) {
			t.Errorf("%s: target %q %+v", tc.id, r.TargetPath, r.Target)
		}
	}
}

// BenchmarkCheckIn: device check-ins decided per second per core over HTTP
// on loopback, with full hybrid verification (no cache), and the bytes each
// reads. "idle" is the common case (timestamp unchanged: timestamp.json and
// the 404 of the next root); "first" is a device with nothing trusted yet.
func BenchmarkCheckIn(b *testing.B) {
	root, url := fixture(b, rollout.State{Phase: rollout.Running, Open: 1, OpenedAt: time.Now()})
	dev := rollout.Device{ID: "someone", Board: "qemu", Version: "1.0", Epoch: 1}
	b.Run("idle", func(b *testing.B) {
		f := &repo.HTTPFetcher{Base: url}
		c, _ := repo.NewClient(root, repo.ClientOptions{Fetcher: f})
		ch := &Checker{Repo: c, Device: dev}
		if _, err := ch.Check(context.Background()); err != nil {
			b.Fatal(err)
		}
		f.Bytes.Store(0)
		b.ResetTimer()
		for b.Loop() {
			if _, err := ch.Check(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(f.Bytes.Load())/float64(b.N), "bytes/check-in")
	})
	b.Run("first", func(b *testing.B) {
		f := &repo.HTTPFetcher{Base: url}
		for b.Loop() {
			c, _ := repo.NewClient(root, repo.ClientOptions{Fetcher: f})
			if _, err := (&Checker{Repo: c, Device: dev}).Check(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(f.Bytes.Load())/float64(b.N), "bytes/check-in")
	})
}
