package efiboot

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func inodeFlags(t *testing.T, path string) (int, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
}

func setImmutable(t *testing.T, path string) error {
	t.Helper()
	flags, err := inodeFlags(t, path)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsImmutableFL)
}

// mount mounts a file system on a new temporary directory (root only) and
// unmounts it when the test ends.
func mount(t *testing.T, args ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a test file system needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", append(args, dir)...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v\n%s", args, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// immutableDir is a directory where chattr +i works: the test's temporary
// directory when its file system has inode flags, else a small ext4 image
// on a loop device.
func immutableDir(t *testing.T) string {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setImmutable(t, probe); err == nil {
		if flags, _ := inodeFlags(t, probe); flags&fsImmutableFL != 0 {
			clearImmutable(t, probe)
			return dir
		}
	}
	clearImmutable(t, probe)
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return mount(t, "-o", "loop", img)
}

// clearImmutable lets the test's cleanup remove path, if it still exists.
func clearImmutable(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsImmutableFL == 0 {
		return
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags&^fsImmutableFL); err != nil {
		t.Errorf("clear the immutable flag of %s: %v", path, err)
	}
}

// testEFIVarFS checks Set, Get, Names and Delete on dir; with immutable,
// the variable files are made immutable the way the kernel creates them.
func testEFIVarFS(t *testing.T, dir string, immutable bool) {
	v := EFIVarFS(dir)
	file := filepath.Join(dir, "Boot0001-"+GlobalGUID)
	long := bytes.Repeat([]byte{0xab}, 100)
	if err := v.Set("Boot0001", GlobalGUID, AttrsBoot, long); err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(file); err != nil || !bytes.Equal(raw, append([]byte{7, 0, 0, 0}, long...)) {
		t.Fatalf("file holds %x, %v", raw, err)
	}
	if immutable {
		if err := setImmutable(t, file); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clearImmutable(t, file) })
		if err := os.WriteFile(file, []byte("x"), 0o644); err == nil {
			t.Fatal("the immutable flag did not take")
		}
	}
	short := []byte{1, 2, 3}
	if err := v.Set("Boot0001", GlobalGUID, AttrsBoot, short); err != nil {
		t.Fatal(err)
	}
	attrs, data, err := v.Get("Boot0001", GlobalGUID)
	if err != nil || attrs != AttrsBoot || !bytes.Equal(data, short) {
		t.Fatalf("Get = %#x, %x, %v; want %#x, %x", attrs, data, err, AttrsBoot, short)
	}
	if immutable {
		if flags, err := inodeFlags(t, file); err != nil || flags&fsImmutableFL == 0 {
			t.Fatalf("rewrite left the file mutable: flags %#x, %v", flags, err)
		}
	}
	if names, err := v.Names(); err != nil || !slices.Contains(names, "Boot0001-"+GlobalGUID) {
		t.Fatalf("Names = %v, %v", names, err)
	}
	if err := v.Delete("Boot0001", GlobalGUID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Get("Boot0001", GlobalGUID); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Get after Delete: %v; want ErrNotExist", err)
	}
	if err := v.Delete("Boot0001", GlobalGUID); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("second Delete: %v; want ErrNotExist", err)
	}
	for _, bad := range []struct{ name, guid string }{{"../x", GlobalGUID}, {"", GlobalGUID}, {"Boot0001", "nope"}} {
		if err := v.Set(bad.name, bad.guid, AttrsBoot, short); err == nil {
			t.Errorf("Set(%q, %q) accepted", bad.name, bad.guid)
		}
	}
}

func TestEFIVarFSImmutable(t *testing.T) { testEFIVarFS(t, immutableDir(t), true) }

// TestEFIVarFSWithoutInodeFlags runs on ramfs, which has no inode flags:
// the implementation must work without them.
func TestEFIVarFSWithoutInodeFlags(t *testing.T) {
	dir := mount(t, "-t", "ramfs", "none")
	probe := filepath.Join(dir, "probe")
	os.WriteFile(probe, nil, 0o644)
	if _, err := inodeFlags(t, probe); !flagsUnsupported(err) {
		t.Fatalf("ramfs answers FS_IOC_GETFLAGS with %v; the test needs a file system without inode flags", err)
	}
	testEFIVarFS(t, dir, false)
}

// TestManagerOnEFIVarFS: the Manager on files writes what it writes to
// MemVars, byte for byte.
func TestManagerOnEFIVarFS(t *testing.T) {
	dir := t.TempDir()
	mem := NewMemVars()
	for _, v := range []Vars{EFIVarFS(dir), mem} {
		put(t, v, 0, diskEntry())
		setOrder(t, v, 0)
		m := testManager(v, "B")
		if _, err := m.Ensure(); err != nil {
			t.Fatal(err)
		}
		if err := m.SetNext("A"); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := mem.Names()
	for _, full := range names {
		name, guid, _ := splitVarName(full)
		a1, d1, _ := mem.Get(name, guid)
		raw, err := os.ReadFile(filepath.Join(dir, full))
		if err != nil || len(raw) < 4 || !bytes.Equal(raw[4:], d1) || raw[0] != byte(a1) {
			t.Errorf("%s: file %x, %v; MemVars has %x", full, raw, err, d1)
		}
	}
	if got, _ := EFIVarFS(dir).Names(); len(got) != len(names) {
		t.Errorf("efivarfs has %v; MemVars %v", got, names)
	}
}
