package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/u-root/mkuimage/cpio"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/images"
	"github.com/pqbranch/pqbranch/images/uki"
	"github.com/pqbranch/pqbranch/initramfs"
	"github.com/pqbranch/pqbranch/qemu"
)

// floorBoot times the boot floor: the same kernel, stub, disk layout and
// firmware path, with a u-root init that powers off at once. Nothing the
// appliance does at boot can be faster than this.
func floorBoot(ctx context.Context, o Options, b *boards.Board) (time.Duration, error) {
	img, err := floorImage(ctx, o, b)
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(filepath.Dir(img))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Config{Board: b, Image: img, NoReboot: true})
	if err != nil {
		return 0, err
	}
	defer vm.Stop()
	select {
	case <-vm.Exited():
		return time.Since(vm.Started), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("floor image did not power off: %w\n%s", ctx.Err(), vm.Console())
	}
}

func floorImage(ctx context.Context, o Options, b *boards.Board) (string, error) {
	archive, err := initramfs.URootArchive(o.CacheDir, o.RepoDir, []string{"poweroff"}, o.Progress)
	if err != nil {
		return "", err
	}
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	err = cpio.ForEachRecord(cpio.Newc.Reader(f), func(r cpio.Record) error {
		if r.Name == "init" {
			return nil
		}
		return w.WriteRecord(cpio.MakeReproducible(r))
	})
	if err != nil {
		return "", err
	}
	// gobusybox resolves /init -> bbin/poweroff -> bb to the poweroff command.
	if err := w.WriteRecord(cpio.Symlink("init", "bbin/poweroff")); err != nil {
		return "", err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return "", err
	}
	initrd, _, err := initramfs.Compress(raw.Bytes())
	if err != nil {
		return "", err
	}
	kernel, stub, err := firmware.KernelAndStub(ctx, o.CacheDir, b)
	if err != nil {
		return "", err
	}
	efi, err := uki.Build(stub, []uki.Section{
		{Name: ".osrel", Data: []byte("ID=floor\n")},
		{Name: ".cmdline", Data: []byte("console=" + b.Console + " quiet")},
		{Name: ".linux", Data: kernel},
		{Name: ".initrd", Data: initrd},
	})
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "pqb-floor-")
	if err != nil {
		return "", err
	}
	img := filepath.Join(dir, "disk.img")
	return img, images.WriteRaw(img, images.Spec{Board: b.Name, Version: "floor", SizeMiB: b.Disk.SizeMiB, UKI: efi}, o.Progress)
}
