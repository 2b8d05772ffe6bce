package appliance

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageOptions reads the board from the files the build put into the
// image, for a board that is not in the build's catalogue.
func TestImageOptions(t *testing.T) {
	board, err := os.ReadFile("../../boards/qemu-x86_64.json")
	if err != nil {
		t.Fatal(err)
	}
	def, err := os.ReadFile("../../boards/qemu-x86_64.config.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	custom := strings.Replace(string(board), `"name": "qemu-x86_64"`, `"name": "branch-custom"`, 1)
	custom = strings.Replace(custom, `"default_config": "qemu-x86_64.config.json"`, `"default_config": "elsewhere.json"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "board.json"), []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "default-config.json"), def, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := ImageOptions(dir)
	if err != nil {
		t.Fatal(err)
	}
	if o.Board != "branch-custom" || !bytes.Equal(o.DefaultConfig, def) {
		t.Fatalf("board %q, default config %d bytes", o.Board, len(o.DefaultConfig))
	}
	if o.WAN.Driver != "virtio_net" || o.WAN.Index == nil || *o.WAN.Index != 0 || o.LAN.Index == nil || *o.LAN.Index != 1 {
		t.Fatalf("nic matches %+v %+v", o.WAN, o.LAN)
	}
	if o.Watchdog != "/dev/watchdog" || o.Tunnel == nil {
		t.Fatalf("options %+v", o)
	}
}

// TestFirstBootAndBrokenFile: on first boot the board default is written
// (0600) and used; a broken file later falls back to the default and says so.
func TestFirstBootAndBrokenFile(t *testing.T) {
	def, err := os.ReadFile("../../boards/qemu-x86_64.config.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pqbranch.json")
	var console bytes.Buffer
	a, err := New(Options{ConfigPath: path, DefaultConfig: def, Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("default config not written 0600: %v %v", fi, err)
	}
	if st := a.configState(); !st.Loaded || st.Defaults || len(st.Errors) != 0 {
		t.Fatalf("first boot state %+v", st)
	}

	if err := os.WriteFile(path, []byte(`{"hostname": 7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err = New(Options{ConfigPath: path, DefaultConfig: def, Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	st := a.configState()
	if !st.Loaded || !st.Defaults || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], path+": hostname: expected a string, got a number") {
		t.Fatalf("broken file state %+v", st)
	}
	if a.store.Current().Hostname != "pqbranch" {
		t.Fatal("not running the board default")
	}
	if strings.Contains(console.String(), "pqbranch-qemu-test-psk") {
		t.Fatal("psk on the console")
	}

	// Without a default, a broken file is fatal: there is nothing to run.
	if _, err := New(Options{ConfigPath: path, Console: &console}); err == nil {
		t.Fatal("no error without any usable config")
	}
}
