package initramfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	"github.com/ulikunitz/xz"
)

func testSpec(t *testing.T) Spec {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pqbranch")
	os.WriteFile(bin, []byte("\x7fELF fake binary"), 0o755)
	modRoot := filepath.Join(dir, "modules")
	os.MkdirAll(filepath.Join(modRoot, "kernel/net"), 0o755)
	os.WriteFile(filepath.Join(modRoot, "kernel/net/b.ko"), []byte("module b"), 0o644)
	os.WriteFile(filepath.Join(modRoot, "kernel/net/a.ko"), []byte("module a"), 0o644)
	return Spec{
		Binary: bin, Applets: []string{"init", "status", "ike"},
		ModulesRoot: modRoot, KernelRelease: "6.1.0-test", Modules: []string{"kernel/net/b.ko", "kernel/net/a.ko"},
		ModulesDep: []byte("kernel/net/a.ko: kernel/net/b.ko\nkernel/net/b.ko:\n"),
		Files:      map[string][]byte{"etc/pqbranch/release.json": []byte(`{"version":"1"}`)},
	}
}

func TestWriteIsSortedAndReproducible(t *testing.T) {
	s := testSpec(t)
	var a, b bytes.Buffer
	if err := Write(&a, s); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two writes of one spec differ")
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(a.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]cpio.Record{}
	for _, r := range recs {
		names = append(names, r.Name)
		byName[r.Name] = r
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s has metadata %+v; want fixed", r.Name, r.Info)
		}
		if d := filepath.Dir(r.Name); d != "." {
			if _, ok := byName[d]; !ok {
				t.Errorf("%s precedes its directory %s", r.Name, d)
			}
		}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("records not sorted: %v", names)
	}
	content := func(name string) string {
		r, ok := byName[name]
		if !ok {
			t.Fatalf("%s missing; have %v", name, names)
		}
		b, _ := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
		return string(b)
	}
	if got := content("lib/modules/pqbranch.load"); got != "6.1.0-test/kernel/net/b.ko\n6.1.0-test/kernel/net/a.ko\n" {
		t.Errorf("load list %q does not keep dependency order", got)
	}
	if got := content("init"); got != "bin/pqbranch" {
		t.Errorf("init -> %q", got)
	}
	if got := content("bin/ike"); got != "pqbranch" {
		t.Errorf("bin/ike -> %q", got)
	}
	if got := content("lib/modules/6.1.0-test/kernel/net/a.ko"); got != "module a" {
		t.Errorf("module a = %q", got)
	}
}

func TestCompressPicksSmallerAndRoundTrips(t *testing.T) {
	var raw bytes.Buffer
	if err := Write(&raw, testSpec(t)); err != nil {
		t.Fatal(err)
	}
	z, err := Zstd(raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	x, err := XZ(raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	got, name, err := Compress(raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"zstd": z, "xz": x}[name]
	if !bytes.Equal(got, want) || len(got) > min(len(z), len(x)) {
		t.Fatalf("Compress chose %s (%d bytes); zstd %d, xz %d", name, len(got), len(z), len(x))
	}
	dz, _ := zstd.NewReader(nil)
	if back, err := dz.DecodeAll(z, nil); err != nil || !bytes.Equal(back, raw.Bytes()) {
		t.Errorf("zstd round trip: %v", err)
	}
	xr, err := xz.NewReader(bytes.NewReader(x))
	if err != nil {
		t.Fatal(err)
	}
	if back, err := io.ReadAll(xr); err != nil || !bytes.Equal(back, raw.Bytes()) {
		t.Errorf("xz round trip: %v", err)
	}
	// The kernel's xz decoder only checks CRC32 (check type 1 in the
	// stream header flags).
	if x[7] != 0x01 {
		t.Errorf("xz check type %#x, want CRC32", x[7])
	}
}
