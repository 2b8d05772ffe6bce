package appliance

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
)

// TestFaultRejectConfig: a dev image built with release.FaultRejectConfig
// refuses a site config the same firmware otherwise accepts, on the real
// load path: the board default runs, status shows the field error, the
// update trial's health says the config is not in force, and neither the
// boot nor a reload rewrites the file.
func TestFaultRejectConfig(t *testing.T) {
	def, err := os.ReadFile("../../boards/qemu-x86_64.config.json")
	if err != nil {
		t.Fatal(err)
	}
	site := []byte(testConfig("1500", "80"))
	for _, tc := range []struct {
		fault    string
		hostname string // of the config in force
		problem  string // the file's field error in status; "": none
		health   string // updateHealth's reason, before the file's errors
	}{
		// The config passed; the next check is the services'.
		{fault: "", hostname: "branch-e2e", health: "services not started"},
		{fault: release.FaultUnhealthy, hostname: "branch-e2e", health: "fault injected: this test image never becomes healthy"},
		{fault: release.FaultRejectConfig, hostname: "pqbranch", problem: "hostname: " + rejectConfigProblem, health: "config not in force: "},
	} {
		t.Run("fault="+tc.fault, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pqbranch.json")
			if err := os.WriteFile(path, site, 0o600); err != nil {
				t.Fatal(err)
			}
			// An old mtime, so that a rewrite within the same tick shows.
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
			rel := release.Release{Version: "0.3.3", Board: "qemu-x86_64", Profile: release.Dev, Fault: tc.fault}
			if err := rel.Validate("test release"); err != nil {
				t.Fatal(err)
			}
			a, err := New(Options{ConfigPath: path, DefaultConfig: def, Release: rel, Console: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			var wantErrors []string
			if tc.problem != "" {
				wantErrors = []string{path + ": " + tc.problem}
			}
			wantHealth := tc.health + strings.Join(wantErrors, "; ")
			for _, when := range []string{"boot", "reload"} {
				if when == "reload" {
					// As SIGHUP or the reload applet would: refused with the
					// fault, taken without it.
					if err := a.store.Reload(); (err != nil) != (tc.problem != "") {
						t.Errorf("reload: %v, want an error: %v", err, tc.problem != "")
					}
				}
				if got := a.store.Current().Hostname; got != tc.hostname {
					t.Errorf("%s: hostname in force %q, want %q", when, got, tc.hostname)
				}
				st := a.statusSources(newClockHolder()).Collect().Config
				if !st.Loaded || st.Defaults != (wantErrors != nil) || !slices.Equal(st.Errors, wantErrors) || st.File != path {
					t.Errorf("%s: status config %+v, want errors %q", when, st, wantErrors)
				}
				if ok, why := a.updateHealth(); ok || why != wantHealth {
					t.Errorf("%s: health %v %q, want false %q", when, ok, why, wantHealth)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(b, site) || !fi.ModTime().Equal(old) {
					t.Errorf("%s: config file rewritten (mtime %v, was %v; %d bytes, %v)", when, fi.ModTime(), old, len(b), err)
				}
			}
		})
	}
}
