package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/update/agent"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/fleet"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// TestRolloutInQEMU has one real box take part in a staged rollout:
//
//   - a release repository is made, and the box's image is built from this
//     tree with the repository's root baked in (pqbuild image -repo-root);
//   - the box is pointed at the repository and the report endpoint
//     (update.repository, update.report_url) and enrolled with the report
//     key its status shows;
//   - a release is published with a plan whose canary wave lists the box:
//     while the rollout is pending the box checks in and stays, and fetches
//     no bundle;
//   - the rollout starts: the box downloads the target from the
//     repository, waits for its maintenance window (the lab moves the
//     clock into it), boots the new slot on trial, commits, and its signed
//     report reaches the controller, whose status counts it as updated.
func TestRolloutInQEMU(t *testing.T) {
	needLab(t)
	// Its own box in its own lab, beside the other update tests.
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()

	// The repository, on the lab's clock from the start: the box believes
	// the lab's time server, and the metadata must be valid then.
	repoDir := filepath.Join(t.TempDir(), "repo")
	signers, roles := repoKeys(t)
	if _, err := repo.Init(repoDir, roles, signers, func() time.Time { return labStart }, repo.DefaultExpiry); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(repoDir, repo.RootFile(1))

	base, img := buildFleetImage(t, root)
	next := buildFleetRelease(t, root, "0.2.0-fleet", base.Epoch+100)

	l := startBoxLab(ctx, t, img)
	var fleetLog bytes.Buffer
	f, err := l.StartFleet(ctx, repoDir, signers, slog.New(slog.NewTextHandler(&fleetLog, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fleet log:\n%s", fleetLog.String())
		}
		if err := f.Close(); err != nil {
			t.Errorf("fleet teardown: %v", err)
		}
	})

	waitBanner(ctx, t, l, 0)
	healthyOn(ctx, t, l, base.Version, "A")

	// Point the box at the repository and the report endpoint.
	if err := l.WriteConfig(ctx, repositoryConfig(t)); err != nil {
		t.Fatal(err)
	}
	r := waitUpdate(ctx, t, l, "first check-in with the repository", 5*time.Minute, func(u status.UpdateStatus) bool {
		return u.Repository == RepoURL() && !u.CheckedIn.IsZero() && strings.HasPrefix(u.Offer, "stay")
	})
	id, keyHex := r.Update.DeviceID, r.Update.ReportKey
	t.Logf("device %s, report key %s, check-in: %s", id, keyHex, r.Update.Offer)
	key, err := hex.DecodeString(keyHex)
	if err != nil || len(key) != ed25519.PublicKeySize || len(id) == 0 {
		t.Fatalf("status shows device id %q and report key %q; want an id and a hex Ed25519 public key", id, keyHex)
	}
	if err := f.Store.Enroll(ctx, store.Device{ID: id, Board: boards.Default, Key: ed25519.PublicKey(key)}); err != nil {
		t.Fatal(err)
	}

	// Publish with the box as the only canary; the rollout is pending.
	rel := bundleRelease(t, next.Bundle)
	plan := rollout.Plan{Waves: []rollout.Wave{
		{Name: "canary", Devices: []string{id}, Soak: rollout.Duration(time.Hour), MaxFailure: 0.5},
		{Name: "everyone", Percent: 100, Soak: rollout.Duration(time.Hour), MaxFailure: 0.05},
	}}
	target, err := f.Controller.Publish(ctx, next.Bundle, rel, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("published %s as %s", rel.Version, target)

	t.Run("wave closed: the box stays", func(t *testing.T) {
		console(ctx, t, l, "update check")
		r := waitUpdate(ctx, t, l, "check-in while pending", 3*time.Minute, func(u status.UpdateStatus) bool {
			return strings.Contains(u.Offer, rel.Version) && strings.Contains(u.Offer, "not open")
		})
		t.Logf("check-in: %s", r.Update.Offer)
		// Give a wrong decision time to show.
		time.Sleep(20 * time.Second)
		r, err := l.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := r.Update.State; (st != agent.Idle && st != agent.Failed) || r.Update.Target != "" {
			t.Errorf("while its wave is closed the box is %s (target %q); want it idle", st, r.Update.Target)
		}
		if n := targetRequests(l); n != 0 {
			t.Errorf("while its wave is closed the box fetched the bundle %d times", n)
		}
		checkBootSteady(t, r.Update, "A")
		if r.Version != base.Version {
			t.Errorf("runs %s; want %s", r.Version, base.Version)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("canary wave open: update, commit, report", func(t *testing.T) {
		if _, err := f.Controller.Command(ctx, rel.Version, rollout.Start, "qemu canary"); err != nil {
			t.Fatal(err)
		}
		console(ctx, t, l, "update check")
		r := waitUpdate(ctx, t, l, "staging "+rel.Version+" from the repository", 10*time.Minute, func(u status.UpdateStatus) bool {
			// WaitUntil: the reboot is planned (the window wait began).
			return u.State == agent.Staged && u.Target == rel.Version && !u.WaitUntil.IsZero()
		})
		u := r.Update
		t.Logf("staged: %s; check-in: %s", describe(u), u.Offer)
		if targetRequests(l) == 0 {
			t.Errorf("staged without fetching the repository's target")
		}
		wait := u.WaitUntil.UTC()
		if wait.IsZero() || wait.Weekday() != time.Sunday || wait.Hour() < 2 || wait.Hour() >= 4 {
			t.Fatalf("reboot planned at %v; want one in the window Sun 02:00-04:00", wait)
		}
		checkBootSteady(t, u, "A")

		mark := l.VM.Mark()
		moveClock(ctx, t, l, wait.Add(-3*time.Second))
		version, slot := waitBanner(ctx, t, l, mark)
		if version != rel.Version || slot != "B" {
			t.Fatalf("rebooted into %s on slot %s; want %s on B", version, slot, rel.Version)
		}
		r = waitUpdate(ctx, t, l, "commit of "+rel.Version, 6*time.Minute, func(u status.UpdateStatus) bool {
			return u.State == agent.Committed && u.ReportsPending == 0
		})
		if r.Update.ReportError != "" {
			t.Logf("a report attempt failed before one got through: %s", r.Update.ReportError)
		}

		st := waitFleet(ctx, t, f, rel.Version, func(s fleet.Status) bool { return s.Waves[0].Updated == 1 })
		if w := st.Waves[0]; w.Eligible != 1 || w.Failed != 0 || !w.Open {
			t.Errorf("canary wave: %+v; want the box eligible, open, updated and not failed", w)
		}
		if st.Waves[1].Open {
			t.Errorf("wave %q opened before the canary soaked", st.Waves[1].Name)
		}
		var text bytes.Buffer
		st.WriteText(&text)
		t.Logf("rollout status:\n%s", text.String())
		out, err := f.Store.Outcomes(ctx, rel.Version)
		if err != nil || out[id] != report.Committed {
			t.Errorf("store outcome for %s: %v %v; want committed", id, out[id], err)
		}
	})
}

// repoKeys makes one hybrid key per role.
func repoKeys(t *testing.T) (repo.Signers, map[repo.Role]repo.RoleConfig) {
	t.Helper()
	signers := repo.Signers{}
	roles := map[repo.Role]repo.RoleConfig{}
	for _, role := range repo.Roles {
		k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		signers[role] = []*hybrid.PrivateKey{k}
		roles[role] = repo.RoleConfig{Keys: []hybrid.PublicKey{k.Public()}, Threshold: 1}
	}
	return signers, roles
}

// buildFleetImage builds the default board's disk image from this tree
// with the repository root baked in: what a fleet's boxes are flashed with.
func buildFleetImage(t *testing.T, root string) (release.Release, string) {
	t.Helper()
	out := t.TempDir()
	var progress bytes.Buffer
	start := time.Now()
	res, err := firmware.Build(context.Background(), firmware.Options{
		Board: boards.Default, RepoDir: repoRoot(t), OutDir: out, CacheDir: firmware.DefaultCacheDir(),
		Progress: &progress, Version: "0.1.0-fleet", RepoRoot: root,
	})
	if err != nil {
		t.Fatalf("build the fleet image: %v\n%s", err, progress.String())
	}
	t.Logf("built the fleet image %s in %.1fs", res.Manifest.Release.Version, time.Since(start).Seconds())
	return res.Manifest.Release, filepath.Join(out, boards.Default, "disk.img")
}

// buildFleetRelease builds the bundle of the next release, which trusts
// the same repository root.
func buildFleetRelease(t *testing.T, root, version string, epoch int64) testRelease {
	t.Helper()
	out := t.TempDir()
	var progress bytes.Buffer
	_, err := firmware.Build(context.Background(), firmware.Options{
		Board: boards.Default, RepoDir: repoRoot(t), OutDir: out, CacheDir: firmware.DefaultCacheDir(),
		Progress: &progress, Version: version, Epoch: epoch, RepoRoot: root, BundleOnly: true,
	})
	if err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, progress.String())
	}
	return testRelease{Version: version, Bundle: filepath.Join(out, boards.Default, firmware.BundleName)}
}

// bundleRelease reads a bundle's release from its verified header, as
// pqfleet publish does.
func bundleRelease(t *testing.T, path string) release.Release {
	t.Helper()
	keys, err := hybrid.ReadKeyring(filepath.Join(filepath.Dir(path), firmware.KeysName))
	if err != nil {
		t.Fatal(err)
	}
	h, err := bundle.VerifyFile(path, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h.Manifest.Release
}

// repositoryConfig is the board's default config checking in with the
// lab's repository and reporting to its endpoint instead of reading one
// bundle URL.
func repositoryConfig(t *testing.T) []byte {
	t.Helper()
	return defaultConfigWith(t, func(c map[string]any) {
		u := c["update"].(map[string]any)
		delete(u, "url")
		u["repository"] = RepoURL()
		u["report_url"] = ReportURL()
	})
}

// targetRequests counts the update server's requests for repository
// targets (bundles), as opposed to metadata.
func targetRequests(l *Lab) int {
	n := 0
	for _, r := range l.UpdateRequests() {
		if strings.HasPrefix(r.Path, "/"+repoDir+"/targets/") {
			n++
		}
	}
	return n
}

// waitFleet polls the controller's status of a release until ok.
func waitFleet(ctx context.Context, t *testing.T, f *Fleet, version string, ok func(fleet.Status) bool) fleet.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var last fleet.Status
	for {
		st, err := f.Controller.Status(ctx, version)
		if err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		select {
		case <-ctx.Done():
			b, _ := json.Marshal(last)
			t.Fatalf("rollout status of %s: %v (last error %v)\n%s", version, ctx.Err(), err, b)
		case <-time.After(2 * time.Second):
		}
	}
}
