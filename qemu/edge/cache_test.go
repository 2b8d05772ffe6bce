package edge

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestLockFileExcludes: a second taker waits, gives up with its context, and
// gets the lock once the first lets go.
func TestLockFileExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if u, err := lockFile(ctx, path); err == nil {
		u()
		t.Fatal("second lockFile succeeded while the lock was held")
	}
	unlock()
	u, err := lockFile(testCtx(t, 5*time.Second), path)
	if err != nil {
		t.Fatalf("lock not free after unlock: %v", err)
	}
	u()
}

// TestRemoveTreeKeepsMountedFiles: a half-built root can hold mounts; removal
// must detach them and never delete through them into what they show.
func TestRemoveTreeKeepsMountedFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	host := t.TempDir()
	precious := filepath.Join(host, "precious")
	if err := os.WriteFile(precious, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "root.tmp-1")
	for _, d := range []string{"dev", "proc", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount(host, filepath.Join(dir, "dev"), "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", filepath.Join(dir, "proc"), "tmpfs", 0, "size=1m"); err != nil {
		_ = syscall.Unmount(filepath.Join(dir, "dev"), syscall.MNT_DETACH)
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmountAll(dir) })

	if err := removeTree(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", dir, err)
	}
	if data, err := os.ReadFile(precious); err != nil || string(data) != "keep" {
		t.Errorf("file behind the bind mount damaged: %q %v", data, err)
	}
	if err := removeTree(context.Background(), dir); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}
