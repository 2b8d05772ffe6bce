package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/fleet"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// TestCLI: keygen, init, publish a real signed bundle, start, pause, status
// in both forms, and a refused command, as an operator would type them.
func TestCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keys, repoDir, db := filepath.Join(dir, "keys"), filepath.Join(dir, "repo"), filepath.Join(dir, "fleet.db")
	sh := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, args, &out)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := sh(args...)
		if err != nil {
			t.Fatalf("pqfleet %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	must("keygen", "-keys", keys)
	if _, err := sh("keygen", "-keys", keys); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second keygen: %v", err)
	}
	must("init", "-repo", repoDir, "-keys", keys)

	// What make image writes: a bundle signed by the release key, and the
	// keyring the image trusts.
	relKey, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ring := filepath.Join(dir, "update-keys.json")
	if err := hybrid.WriteKeyring(ring, hybrid.Keyring{Keys: []hybrid.TrustedKey{{PublicKey: relKey.Public(), Name: "release"}}}); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("slot image "), 50000)
	bpath := filepath.Join(dir, "update.pqb")
	bf, _ := os.Create(bpath)
	rel := release.Release{Version: "0.2.0+gabc", Board: "qemu-x86_64", Profile: "prod", Kernel: "6.1.0", Epoch: 1800000000}
	if _, err := bundle.Write(bf, rel, bytes.NewReader(payload), int64(len(payload)), relKey); err != nil {
		t.Fatal(err)
	}
	bf.Close()

	// A bundle that does not verify with the given keyring is not published.
	other := filepath.Join(dir, "other-keys.json")
	otherKey, _ := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	hybrid.WriteKeyring(other, hybrid.Keyring{Keys: []hybrid.TrustedKey{{PublicKey: otherKey.Public(), Name: "other"}}})
	if _, err := sh("publish", "-repo", repoDir, "-keys", keys, "-db", db, "-bundle", bpath, "-trust", other); err == nil {
		t.Errorf("publishing a bundle signed by an untrusted key succeeded")
	}

	out := must("publish", "-repo", repoDir, "-keys", keys, "-db", db, "-bundle", bpath, "-trust", ring, "-canary", "dev-1,dev-2", "-soak", "1h")
	if !strings.Contains(out, "published qemu-x86_64/0.2.0+gabc.pqb") {
		t.Errorf("publish said %q", out)
	}
	must("enroll", "-db", db, "-device", "dev-1", "-board", "qemu-x86_64", "-key", strings.Repeat("ab", 32))
	must("rollout", "start", "-repo", repoDir, "-keys", keys, "-db", db, "-release", rel.Version)
	out = must("rollout", "pause", "-repo", repoDir, "-keys", keys, "-db", db, "-release", rel.Version, "-why", "holiday freeze")
	if !strings.Contains(out, "paused, 1 wave(s) open: holiday freeze") {
		t.Errorf("pause said %q", out)
	}
	if _, err := sh("rollout", "pause", "-repo", repoDir, "-keys", keys, "-db", db, "-release", rel.Version); err == nil || !strings.Contains(err.Error(), "cannot pause: it is paused") {
		t.Errorf("second pause: %v", err)
	}

	// The published state is signed metadata a device verifies.
	root, _ := os.ReadFile(filepath.Join(repoDir, "1.root.json"))
	c, err := repo.NewClient(root, repo.ClientOptions{Fetcher: repo.DirFetcher(repoDir)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, f, err := c.Targets().Release(rel.Version)
	if err != nil || f.Custom.Rollout.Phase != rollout.Paused || f.Custom.Release.BuildID == "" {
		t.Fatalf("verified targets: %v %+v", err, f.Custom)
	}
	if _, err := c.FetchTarget(ctx, "qemu-x86_64/0.2.0+gabc.pqb"); err != nil {
		t.Errorf("fetching the published bundle: %v", err)
	}

	out = must("status", "-repo", repoDir, "-db", db, "-release", rel.Version)
	for _, want := range []string{"release 0.2.0+gabc (qemu-x86_64", "paused", "why: holiday freeze", "canary", "operator: pause: holiday freeze"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not show %q:\n%s", want, out)
		}
	}
	var st fleet.Status
	if err := json.Unmarshal([]byte(must("status", "-repo", repoDir, "-db", db, "-release", rel.Version, "-json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.State.Phase != rollout.Paused || len(st.Waves) != 5 || st.Waves[0].Eligible != 1 || st.Waves[0].Silent != 1 || !st.Waves[0].Open {
		t.Errorf("status -json: %+v", st)
	}
}
