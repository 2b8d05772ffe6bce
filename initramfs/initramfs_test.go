package initramfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

func readArchive(t *testing.T, b []byte) (map[string]cpio.Record, []string) {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
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
	return byName, names
}

func TestSegmentsAreSortedAndReproducible(t *testing.T) {
	s := testSpec(t)
	base, app, err := Segments(s)
	if err != nil {
		t.Fatal(err)
	}
	base2, app2, err := Segments(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base, base2) || !bytes.Equal(app, app2) {
		t.Fatal("two writes of one spec differ")
	}
	baseRecs, _ := readArchive(t, base)
	appRecs, appNames := readArchive(t, app)
	content := func(recs map[string]cpio.Record, name string) string {
		r, ok := recs[name]
		if !ok {
			t.Fatalf("%s missing", name)
		}
		b, _ := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
		return string(b)
	}
	if got := content(baseRecs, "lib/modules/pqbranch.load"); got != "6.1.0-test/kernel/net/b.ko\n6.1.0-test/kernel/net/a.ko\n" {
		t.Errorf("load list %q does not keep dependency order", got)
	}
	if got := content(baseRecs, "lib/modules/6.1.0-test/kernel/net/a.ko"); got != "module a" {
		t.Errorf("module a = %q", got)
	}
	if got := content(appRecs, "init"); got != "bin/pqbranch" {
		t.Errorf("init -> %q", got)
	}
	if got := content(appRecs, "bin/ike"); got != "pqbranch" {
		t.Errorf("bin/ike -> %q", got)
	}
	// What changes with every build must not be in the cached segment.
	for _, n := range appNames {
		if _, ok := baseRecs[n]; ok && appRecs[n].Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("%s is in both segments", n)
		}
	}
	// Changing the binary changes only the app segment.
	os.WriteFile(s.Binary, []byte("\x7fELF another build"), 0o755)
	base3, app3, err := Segments(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base, base3) || bytes.Equal(app, app3) {
		t.Error("a new binary must change the app segment and only it")
	}
}

func TestCompressCached(t *testing.T) {
	base, _, err := Segments(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first, m1, err := CompressCached(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "initramfs"))
	if len(entries) != 1 || !strings.HasSuffix(entries[0].Name(), "."+m1) {
		t.Fatalf("cache holds %v, want one .%s file", entries, m1)
	}
	// A cache hit returns the stored bytes: corrupt them to prove it.
	p := filepath.Join(dir, "initramfs", entries[0].Name())
	os.WriteFile(p, []byte("cached"), 0o644)
	second, m2, err := CompressCached(dir, base)
	if err != nil || string(second) != "cached" || m2 != m1 {
		t.Fatalf("second call = %q, %s, %v; want the cached bytes", second[:min(len(second), 10)], m2, err)
	}
	if len(first) == 0 {
		t.Fatal("empty compression")
	}
}

func TestCompressPicksSmallerAndRoundTrips(t *testing.T) {
	base, app, err := Segments(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.NewBuffer(append(base, app...))
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
