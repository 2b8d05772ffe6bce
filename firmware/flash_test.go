package firmware

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func randomImage(t *testing.T, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlashToFile(t *testing.T) {
	img := randomImage(t, 9<<20+123)
	dst := filepath.Join(t.TempDir(), "target.img")
	var progress bytes.Buffer
	if err := Flash(context.Background(), img, dst, FlashOptions{Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("target differs from image")
	}
	for _, want := range []string{"writing: 100%", "verifying: 100%", "flashed and verified"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
}

// loopDevice attaches a file of size bytes as a block device and detaches
// it when the test ends.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", f).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func TestFlashBlockDevice(t *testing.T) {
	dev := loopDevice(t, 16<<20)
	img := randomImage(t, 12<<20)
	if err := Flash(context.Background(), img, dev, FlashOptions{Stdin: strings.NewReader("no\n")}); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("unconfirmed flash: %v", err)
	}
	if err := Flash(context.Background(), img, dev, FlashOptions{Stdin: strings.NewReader("yes\n")}); err != nil {
		t.Fatal(err)
	}
	big := randomImage(t, 20<<20)
	if err := Flash(context.Background(), big, dev, FlashOptions{Confirmed: true}); err == nil || !strings.Contains(err.Error(), "the image needs") {
		t.Fatalf("flash of a too-large image: %v", err)
	}
}

func TestFlashRefusesMountedDevice(t *testing.T) {
	dev := loopDevice(t, 32<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	marker := filepath.Join(mnt, "keep")
	if err := os.WriteFile(marker, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Flash(context.Background(), randomImage(t, 1<<20), dev, FlashOptions{Confirmed: true})
	if err == nil || !strings.Contains(err.Error(), "is mounted on "+mnt) {
		t.Fatalf("flash onto a mounted device: %v", err)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "data" {
		t.Fatalf("the mounted file system was touched: %q, %v", b, err)
	}
}

func TestMountedOn(t *testing.T) {
	mounts := "/dev/sda1 /boot vfat rw 0 0\n/dev/nvme0n1p2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb /mnt ext4 rw 0 0\n"
	same := func(p string) string { return p }
	tests := []struct{ dev, at string }{
		{"/dev/sda", "/boot"},
		{"/dev/nvme0n1", "/"},
		{"/dev/sdb", "/mnt"},
		{"/dev/sdc", ""},
		{"/dev/sd", ""},    // sda1 is not a partition of "sd"
		{"/dev/nvme0", ""}, // nor is nvme0n1p2 one of nvme0
	}
	for _, tt := range tests {
		if _, at := mountedOn(tt.dev, mounts, same); at != tt.at {
			t.Errorf("mountedOn(%s) = %q, want %q", tt.dev, at, tt.at)
		}
	}
}
