package firmware

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Release is the identity of a build: what the banner, the manifest and
// update bundles call it.
type Release struct {
	Version string
	// Epoch is SOURCE_DATE_EPOCH: the commit time, used for every timestamp
	// in the image so that two builds of one commit are byte-identical.
	Epoch int64
}

// CurrentRelease derives the release from the git checkout at dir: the
// version in firmware/VERSION plus the commit, and the commit's time. A
// PQB_VERSION or SOURCE_DATE_EPOCH in the environment overrides either.
func CurrentRelease(ctx context.Context, dir string) (Release, error) {
	base, err := os.ReadFile(dir + "/firmware/VERSION")
	if err != nil {
		return Release{}, fmt.Errorf("version: %w", err)
	}
	r := Release{Version: strings.TrimSpace(string(base))}
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
	return r, nil
}
