package appliance

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pqbranch/pqbranch/services/provision"
)

// TestNewProvisionsFirst: a stick present at boot is checked before the
// config is loaded, ahead of the first-boot default, and its outcome is in
// the status sources.
func TestNewProvisionsFirst(t *testing.T) {
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
	cfgPath := filepath.Join(dir, "pqbranch.json")
	app, err := New(Options{
		ConfigPath:    cfgPath,
		DefaultConfig: []byte(`{"hostname": "board-default", "wan": {"mode": "dhcp"}, "lan": {"addresses": ["192.168.77.1/24"]}}`),
		Console:       io.Discard,
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
	if c := app.store.Current(); c == nil || c.Hostname != "branch-stick" || c.Serial != 3 {
		t.Fatalf("config in force %+v, want the stick's", c)
	}
	if app.defaults.Load() {
		t.Error("running the board default")
	}
	src := app.statusSources(newClockHolder())
	if src.Provision == nil || src.Provision.Outcome != provision.Installed || src.Provision.Device != "sda1" {
		t.Errorf("status provision %+v, want installed from sda1", src.Provision)
	}
}
