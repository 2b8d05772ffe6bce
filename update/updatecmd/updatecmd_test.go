package updatecmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/agent"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/slots"
	"github.com/pqbranch/pqbranch/update/window"
)

// recBoot is a BootControl that records calls.
type recBoot struct {
	mu    sync.Mutex
	calls []string
}

func (b *recBoot) rec(c string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, c)
	return nil
}
func (b *recBoot) Ensure() (map[string]uint16, error) { return nil, b.rec("Ensure") }
func (b *recBoot) SetNext(s string) error             { return b.rec("SetNext " + s) }
func (b *recBoot) ClearNext() error                   { return b.rec("ClearNext") }
func (b *recBoot) Commit(s string) error              { return b.rec("Commit " + s) }

type fileSlots string

func (d fileSlots) OpenSlot(slot string) (agent.Device, error) {
	return slots.CreateFile(filepath.Join(string(d), slot), 4<<20)
}

func rel(v string, sv uint64) release.Release {
	return release.Release{Version: v, Board: "qemu-x86_64", Profile: release.Dev, Kernel: "6.1", SecurityVersion: sv, Epoch: 1}
}

// startAgent runs an agent on a socket, with a window that stays closed.
func startAgent(t *testing.T) (socket string, keys *hybrid.PrivateKey, boot *recBoot) {
	key, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "upd") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket = filepath.Join(dir, "update.sock")
	boot = &recBoot{}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	a, err := agent.New(agent.Options{
		DataDir: dir, Running: rel("0.1.0", 1), Slot: "A", Disk: fileSlots(dir), Boot: boot,
		Keys:   hybrid.Keyring{Keys: []hybrid.TrustedKey{{PublicKey: key.Public(), Name: "test"}}},
		Window: window.Window{Start: 2 * time.Hour, Duration: time.Hour},
		Health: func() (bool, string) { return true, "" }, Reboot: func(string) error { return nil },
		Now: func() time.Time { return now }, Socket: socket,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return socket, key, boot
}

func writeBundle(t *testing.T, key *hybrid.PrivateKey, r release.Release) string {
	p := make([]byte, 3<<20)
	rand.Read(p[:1<<20])
	path := filepath.Join(t.TempDir(), "u.pqb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := bundle.Write(f, r, bytes.NewReader(p), int64(len(p)), key); err != nil {
		t.Fatal(err)
	}
	return path
}

func cmd(t *testing.T, socket string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"-socket", socket}, args...), &out, &errb)
	return out.String() + errb.String(), err
}

func TestInstallStatusCancel(t *testing.T) {
	socket, key, boot := startAgent(t)
	path := writeBundle(t, key, rel("0.2.0", 2))

	out, err := cmd(t, socket, "install", path)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	for _, want := range []string{"update: staged", "target    0.2.0", "waiting   until 2026-03-03T0", "window    daily 02:00-03:00"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}

	out, err = cmd(t, socket, "-json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	if st.State != agent.Staged || st.Target != "0.2.0" || st.Percent != 100 || st.Version != "0.1.0" {
		t.Fatalf("status %+v", st)
	}

	if out, err := cmd(t, socket, "cancel"); err != nil {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ = cmd(t, socket, "status")
		if strings.Contains(out, "update: idle") && strings.Contains(out, "last      cancelled 0.1.0 -> 0.2.0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after cancel:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := cmd(t, socket, "apply-now"); err == nil || !strings.Contains(err.Error(), "nothing staged") {
		t.Fatalf("apply-now with nothing staged: %v", err)
	}
	for _, c := range boot.calls {
		if strings.HasPrefix(c, "SetNext") || strings.HasPrefix(c, "Commit") {
			t.Fatalf("boot calls %v", boot.calls)
		}
	}
}

func TestRejectedInstall(t *testing.T) {
	socket, _, _ := startAgent(t)
	other, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := writeBundle(t, other, rel("0.2.0", 2))
	out, err := cmd(t, socket, "install", path)
	if err == nil || !strings.Contains(err.Error(), "does not trust") || !strings.Contains(out, "update: failed") {
		t.Fatalf("install of a bundle signed by an unknown key: %v\n%s", err, out)
	}
}

func TestUsage(t *testing.T) {
	tests := [][]string{{}, {"frobnicate"}, {"install"}, {"status", "extra"}, {"check"}}
	for _, args := range tests {
		socket, _, _ := startAgent(t)
		if _, err := cmd(t, socket, args...); err == nil {
			t.Errorf("update %q: accepted", args)
		}
	}
}
