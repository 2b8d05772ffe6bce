package firmware

import (
	"bytes"
	"context"
	"debug/pe"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	"github.com/ulikunitz/xz"

	"github.com/pqbranch/pqbranch/initramfs"
)

// initramfsNames builds the default board with a profile and lists the
// files of the initramfs inside the UKI, segment by segment.
func initramfsNames(t *testing.T, profile string) map[string]bool {
	t.Helper()
	out := t.TempDir()
	res, err := Build(context.Background(), Options{Board: "qemu-x86_64", Profile: profile, RepoDir: repoRoot(t), OutDir: out, CacheDir: DefaultCacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(filepath.Join(res.Dir, "pqbranch.efi"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sec := f.Section(".initrd")
	if sec == nil {
		t.Fatal("UKI has no .initrd")
	}
	initrd, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	initrd = initrd[:sec.VirtualSize]
	methods := strings.Split(res.Manifest.Initramfs.Compression, "+")
	if len(methods) != len(res.Manifest.Initramfs.Segments) {
		t.Fatalf("manifest: %d methods for %d segments", len(methods), len(res.Manifest.Initramfs.Segments))
	}
	names := map[string]bool{}
	for i, size := range res.Manifest.Initramfs.Segments {
		seg := initrd[:size]
		initrd = initrd[size:]
		var raw []byte
		switch methods[i] {
		case "zstd":
			d, _ := zstd.NewReader(nil)
			raw, err = d.DecodeAll(seg, nil)
		case "xz":
			var r *xz.Reader
			if r, err = xz.NewReader(bytes.NewReader(seg)); err == nil {
				raw, err = io.ReadAll(r)
			}
		default:
			t.Fatalf("unknown method %q", methods[i])
		}
		if err != nil {
			t.Fatalf("segment %d (%s): %v", i, methods[i], err)
		}
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			names[r.Name] = true
		}
	}
	if len(initrd) != 0 {
		t.Fatalf("%d bytes after the last segment", len(initrd))
	}
	return names
}

func TestProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two images")
	}
	dev := initramfsNames(t, initramfs.Dev)
	prod := initramfsNames(t, initramfs.Prod)
	for _, must := range []string{"init", "bin/pqbranch", "bin/status", "etc/pqbranch/release.json", "lib/modules/pqbranch.load"} {
		if !dev[must] || !prod[must] {
			t.Errorf("%s missing (dev %v, prod %v)", must, dev[must], prod[must])
		}
	}
	if !dev["bbin/gosh"] {
		t.Error("the dev image has no shell")
	}
	for name := range prod {
		if strings.HasPrefix(name, "bbin") {
			t.Errorf("the prod image carries %s; it must have no shell and no u-root commands", name)
		}
	}
}
