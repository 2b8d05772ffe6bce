package power

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPlanOrder(t *testing.T) {
	var calls []string
	p := &Plan{
		Stop:    func() error { calls = append(calls, "stop"); return errors.New("tunnel stuck") },
		Unmount: []string{"/data", "/boot"},
		sync:    func() { calls = append(calls, "sync") },
		unmount: func(m string) error {
			calls = append(calls, "umount "+m)
			if m == "/data" {
				return unix.EBUSY
			}
			return nil
		},
		remount: func(m string) error { calls = append(calls, "ro "+m); return nil },
		rebootCall: func(cmd int) error {
			calls = append(calls, map[int]string{unix.LINUX_REBOOT_CMD_RESTART: "reboot", unix.LINUX_REBOOT_CMD_POWER_OFF: "poweroff"}[cmd])
			return nil
		},
	}
	if err := p.Run(Poweroff); err != nil {
		t.Fatal(err)
	}
	want := []string{"stop", "sync", "umount /data", "ro /data", "umount /boot", "sync", "poweroff"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
}

// TestUnmountsForReal mounts a tmpfs and lets the plan unmount it.
func TestUnmountsForReal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	rebooted := false
	p := &Plan{Unmount: []string{dir}, rebootCall: func(int) error { rebooted = true; return nil }}
	if err := p.Run(Reboot); err != nil {
		t.Fatal(err)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), dir) {
		t.Fatalf("%s still mounted", dir)
	}
	if !rebooted {
		t.Fatal("no reboot")
	}
}

func TestFromSignal(t *testing.T) {
	for sig, want := range map[os.Signal]Action{unix.SIGTERM: Reboot, unix.SIGUSR2: Poweroff, unix.SIGUSR1: Poweroff} {
		if a, ok := FromSignal(sig); !ok || a != want {
			t.Errorf("%v: %v %v", sig, a, ok)
		}
	}
	if _, ok := FromSignal(unix.SIGHUP); ok {
		t.Error("SIGHUP is a reload, not a power action")
	}
}
