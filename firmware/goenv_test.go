package firmware

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lookupEnv is what an exec.Cmd with env gives its child for key: the last
// of duplicate entries.
func lookupEnv(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// TestGoBuildEnv checks that Options.GoCache reaches the appliance's go
// build as its GOCACHE, over one the environment has, that "" leaves the
// environment's in place, and that the cross-compiling variables are set
// either way.
func TestGoBuildEnv(t *testing.T) {
	user := []string{"PATH=/usr/bin", "GOCACHE=/home/u/.cache/go-build", "GOARCH=arm64"}
	for _, tc := range []struct {
		name    string
		base    []string
		goCache string
		want    string // "" for no GOCACHE at all
	}{
		{"option over environment", user, "/tmp/bench/gocache", "/tmp/bench/gocache"},
		{"environment's when unset", user, "", "/home/u/.cache/go-build"},
		{"option without environment", []string{"PATH=/usr/bin"}, "/tmp/bench/gocache", "/tmp/bench/gocache"},
		{"none at all", []string{"PATH=/usr/bin"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Join(tc.base, "\n")
			env := goBuildEnv(tc.base, tc.goCache)
			got, found := lookupEnv(env, "GOCACHE")
			if got != tc.want || found != (tc.want != "") {
				t.Errorf("GOCACHE = %q (set %v), want %q", got, found, tc.want)
			}
			for k, want := range map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64", "PATH": "/usr/bin"} {
				if v, _ := lookupEnv(env, k); v != want {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
			if after := strings.Join(tc.base, "\n"); after != before {
				t.Errorf("base environment changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

// TestGoBuildEnvReachesGo hands the environment to the go command itself,
// as buildAppliance does, and checks that go uses the option's cache while
// the process keeps the GOCACHE it had.
func TestGoBuildEnvReachesGo(t *testing.T) {
	user := filepath.Join(t.TempDir(), "user-cache")
	t.Setenv("GOCACHE", user)
	dir := filepath.Join(t.TempDir(), "gocache")
	cmd := exec.CommandContext(context.Background(), "go", "env", "GOCACHE")
	cmd.Env = goBuildEnv(os.Environ(), dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != dir {
		t.Errorf("go env GOCACHE = %q, want the option's %q", got, dir)
	}
	if got := os.Getenv("GOCACHE"); got != user {
		t.Errorf("process GOCACHE = %q, want it left at %q", got, user)
	}
}
