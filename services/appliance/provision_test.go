package appliance

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/provision"
)

// TestNewProvisionsFirst: a stick present at boot is checked before the
// config is loaded, ahead of the first-boot default, and its outcome is in
// the status sources. A firmware that refuses the site's config (a test
// image with release.FaultRejectConfig) refuses the stick's the same way:
// it is not installed, and the board default runs.
func TestNewProvisionsFirst(t *testing.T) {
	for _, tc := range []struct {
		fault    string
		outcome  provision.Outcome
		hostname string // of the config in force
		defaults bool   // the board default runs
		err      string // in the stick's errors
	}{
		{fault: "", outcome: provision.Installed, hostname: "branch-stick"},
		{fault: release.FaultRejectConfig, outcome: provision.Rejected, hostname: "board-default", defaults: true,
			err: "usb sda1:/pqbranch.json: hostname: " + rejectConfigProblem},
	} {
		t.Run("fault="+tc.fault, func(t *testing.T) {
			dir := t.TempDir()
			sys := filepath.Join(dir, "sys")
			if err := os.MkdirAll(filepath.Join(sys, "class/block/sda"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sys, "class/block/sda/removable"), []byte("1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			stick := filepath.Join(dir, "stick.img")
			site := []byte(`{"serial": 3, "hostname": "branch-stick", "wan": {"mode": "dhcp"}, "lan": {"addresses": ["198.18.1.1/24"]}}`)
			if err := provision.WriteStick(stick, site); err != nil {
				t.Fatal(err)
			}
			rel := release.Release{Version: "0.3.3", Board: "qemu-x86_64", Profile: release.Dev, Fault: tc.fault}
			if err := rel.Validate("test release"); err != nil {
				t.Fatal(err)
			}
			cfgPath := filepath.Join(dir, "pqbranch.json")
			app, err := New(Options{
				ConfigPath:    cfgPath,
				DefaultConfig: []byte(`{"hostname": "board-default", "wan": {"mode": "dhcp"}, "lan": {"addresses": ["192.168.77.1/24"]}}`),
				Console:       io.Discard,
				Release:       rel,
				Provision: &provision.Provisioner{Sys: sys, Open: func(name string) (*os.File, error) {
					if name != "sda" {
						return nil, fmt.Errorf("unexpected device %s", name)
					}
					return os.Open(stick)
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if c := app.store.Current(); c == nil || c.Hostname != tc.hostname {
				t.Fatalf("config in force %+v, want hostname %q", c, tc.hostname)
			}
			if app.defaults.Load() != tc.defaults {
				t.Errorf("running the board default: %v, want %v", app.defaults.Load(), tc.defaults)
			}
			src := app.statusSources(newClockHolder())
			if p := src.Provision; p == nil || p.Outcome != tc.outcome || p.Device != "sda1" ||
				(tc.err == "") != (len(p.Errors) == 0) || tc.err != "" && !strings.Contains(strings.Join(p.Errors, "\n"), tc.err) {
				t.Errorf("status provision %+v, want %v from sda1 with error %q", p, tc.outcome, tc.err)
			}
		})
	}
}
