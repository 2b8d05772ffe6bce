package firmware

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pqbranch/pqbranch/release"
)

// CurrentRelease derives the release's identity from the git checkout at
// dir: the version in firmware/VERSION plus the commit, the commit's time as
// the epoch, and the security version in firmware/SECURITY_VERSION. PQB_VERSION,
// SOURCE_DATE_EPOCH and PQB_SECURITY_VERSION in the environment override them.
// Board, profile and kernel are the build's to fill in.
func CurrentRelease(ctx context.Context, dir string) (release.Release, error) {
	base, err := os.ReadFile(filepath.Join(dir, "firmware", "VERSION"))
	if err != nil {
		return release.Release{}, fmt.Errorf("version: %w", err)
	}
	r := release.Release{Version: strings.TrimSpace(string(base))}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	if commit, err := git("rev-parse", "--short=12", "HEAD"); err == nil {
		r.Version += "+g" + commit
		if ct, err := git("log", "-1", "--format=%ct"); err == nil {
			r.Epoch, _ = strconv.ParseInt(ct, 10, 64)
		}
		if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
			r.Version += ".dirty"
		}
	}
	if v := os.Getenv("PQB_VERSION"); v != "" {
		r.Version = v
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return r, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970", e)
		}
		r.Epoch = n
	}
	secFile := filepath.Join(dir, "firmware", "SECURITY_VERSION")
	sec, err := os.ReadFile(secFile)
	if err != nil {
		return r, fmt.Errorf("security version: %w", err)
	}
	what := secFile
	if e := os.Getenv("PQB_SECURITY_VERSION"); e != "" {
		sec, what = []byte(e), "PQB_SECURITY_VERSION"
	}
	if r.SecurityVersion, err = strconv.ParseUint(strings.TrimSpace(string(sec)), 10, 64); err != nil {
		return r, fmt.Errorf("%s: is %q; expected a whole number (the anti-rollback counter)", what, strings.TrimSpace(string(sec)))
	}
	return r, nil
}
