package firmware

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/images"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// buildBoard builds with a board file written to a temporary directory.
func buildBoard(t *testing.T, edit func(string) string) (string, error) {
	t.Helper()
	good, err := os.ReadFile(filepath.Join(repoRoot(t), "boards", "qemu-x86_64.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	board := filepath.Join(dir, "qemu-x86_64.json")
	if err := os.WriteFile(board, []byte(edit(string(good))), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(repoRoot(t), "boards", "qemu-x86_64.config.json"))
	os.WriteFile(filepath.Join(dir, "qemu-x86_64.config.json"), cfg, 0o644)
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	_, err = Build(context.Background(), Options{Board: board, RepoDir: repoRoot(t), OutDir: out, CacheDir: DefaultCacheDir()})
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a failed build left %d entries in out/: %v", len(entries), entries[0].Name())
	}
	return board, err
}

func TestWrongKernelSHA256WritesNothing(t *testing.T) {
	const good = "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1"
	const wrong = "0000000000000000000000000000000000000000000000000000000000000000"
	board, err := buildBoard(t, func(s string) string { return strings.Replace(s, good, wrong, 1) })
	if err == nil {
		t.Fatal("build with a wrong kernel sha256 succeeded")
	}
	for _, want := range []string{board, `field "kernel.sha256"`, "expected " + wrong, "is " + good} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestBadBoardWritesNothing(t *testing.T) {
	board, err := buildBoard(t, func(s string) string { return strings.Replace(s, `"console"`, `"colsone": 1, "console"`, 1) })
	if err == nil || !strings.Contains(err.Error(), board) || !strings.Contains(err.Error(), `field "colsone"`) {
		t.Fatalf("error = %v; want unknown field colsone in %s", err, board)
	}
}

func TestUnknownModuleWritesNothing(t *testing.T) {
	_, err := buildBoard(t, func(s string) string { return strings.Replace(s, `"virtio_net"`, `"virtio_nett"`, 1) })
	if err == nil || !strings.Contains(err.Error(), `field "modules"`) || !strings.Contains(err.Error(), "virtio_nett") {
		t.Fatalf("error = %v; want the unknown module named", err)
	}
}

// TestReproducible builds the committed tree twice, from two clones in
// different directories, and compares every artifact.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two images")
	}
	// Pin the commit once: the tree may gain commits while this runs.
	head, err := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.TrimSpace(string(head))
	var (
		sums     []map[string]Artifact
		versions []string
		buildIDs []string
	)
	for i := 0; i < 2; i++ {
		dir := filepath.Join(t.TempDir(), "src")
		if out, err := exec.Command("git", "clone", "-q", "--no-hardlinks", repoRoot(t), dir).CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v: %s", err, out)
		}
		if out, err := exec.Command("git", "-C", dir, "checkout", "-q", commit).CombinedOutput(); err != nil {
			t.Fatalf("git checkout %s: %v: %s", commit, err, out)
		}
		out := filepath.Join(dir, "out")
		os.Mkdir(out, 0o755)
		var progress bytes.Buffer
		res, err := Build(context.Background(), Options{Board: "qemu-x86_64", RepoDir: dir, OutDir: out, CacheDir: DefaultCacheDir(), Progress: &progress})
		if err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, progress.String())
		}
		if strings.HasSuffix(res.Manifest.Release.Version, ".dirty") {
			t.Fatalf("a clean clone built a dirty version %s", res.Manifest.Release.Version)
		}
		sums = append(sums, res.Manifest.Artifacts)
		versions = append(versions, res.Manifest.Release.Version)
		buildIDs = append(buildIDs, res.Manifest.Release.BuildID)
	}
	if versions[0] != versions[1] {
		t.Fatalf("the two builds have different versions %s and %s", versions[0], versions[1])
	}
	// The bundle's ML-DSA signature is hedged (randomised, as FIPS 204
	// recommends), so update.pqb differs in its signature; what it signs,
	// the slot image, must not.
	if buildIDs[0] == "" || buildIDs[0] != buildIDs[1] {
		t.Errorf("the slot images differ between builds: build ids %q and %q", buildIDs[0], buildIDs[1])
	}
	for name, a := range sums[0] {
		if name == BundleName {
			continue
		}
		if sums[1][name] != a {
			t.Errorf("%s differs between builds: %s vs %s", name, a.SHA256, sums[1][name].SHA256)
		}
	}
	if len(sums[0]) < 3 {
		t.Errorf("manifest lists %d artifacts, want disk.img, disk.qcow2, pqbranch.efi", len(sums[0]))
	}
}

func TestIDsDependOnBoardAndVersion(t *testing.T) {
	a := images.ID("qemu-x86_64", "1.0", "disk")
	for _, other := range []images.Identifier{
		images.ID("generic-x86_64", "1.0", "disk"),
		images.ID("qemu-x86_64", "1.1", "disk"),
		images.ID("qemu-x86_64", "1.0", "pqb-slot-a"),
	} {
		if other == a {
			t.Errorf("ids collide: %s", a.UUID())
		}
	}
	if images.ID("qemu-x86_64", "1.0", "disk") != a {
		t.Error("ID is not deterministic")
	}
}
