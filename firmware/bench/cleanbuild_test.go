package bench

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCleanBuildKeepsProcessEnv prepares a clean build of a small repository
// and checks that the build gets an empty Go cache of its own through its
// options, under the bench's temporary directory, while the process's
// GOCACHE stays what the user set.
func TestCleanBuildKeepsProcessEnv(t *testing.T) {
	repo := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q"},
		{"-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "--allow-empty", "-m", "empty"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v: %s", args[0], err, out)
		}
	}
	userCache := filepath.Join(t.TempDir(), "user-gocache")
	t.Setenv("GOCACHE", userCache)

	tmp := t.TempDir()
	o := Options{Board: "x86-64", RepoDir: repo, CacheDir: t.TempDir(), Progress: io.Discard}
	opts, err := cleanBuild(context.Background(), o, tmp)
	if err != nil {
		t.Fatal(err)
	}
	if got := os.Getenv("GOCACHE"); got != userCache {
		t.Errorf("process GOCACHE = %q after setup, want the user's %q", got, userCache)
	}
	if opts.GoCache == "" || opts.GoCache == userCache || !strings.HasPrefix(opts.GoCache, tmp+string(filepath.Separator)) {
		t.Errorf("GoCache = %q, want a directory of its own under %s", opts.GoCache, tmp)
	}
	if _, err := os.Stat(opts.GoCache); !os.IsNotExist(err) {
		t.Errorf("GoCache %s is not empty: stat says %v", opts.GoCache, err)
	}
	if !strings.HasPrefix(opts.RepoDir, tmp) || !strings.HasPrefix(opts.CacheDir, tmp) || !strings.HasPrefix(opts.OutDir, opts.RepoDir) {
		t.Errorf("build outside the bench's directory %s: repo %s, cache %s, out %s", tmp, opts.RepoDir, opts.CacheDir, opts.OutDir)
	}
}
