package uki

import (
	"bytes"
	"debug/pe"
	"os"
	"path/filepath"
	"testing"
)

// stubPath is where Debian's systemd-boot-efi puts the stub; the build fetches
// the same package into its cache.
func findStub(t *testing.T) []byte {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache/pqbranch/root/*/usr/lib/systemd/boot/efi/linuxx64.efi.stub"))
	paths = append(paths, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			return b
		}
	}
	t.Fatalf("no linuxx64.efi.stub found; run `make image` once to fetch systemd-boot-efi")
	return nil
}

func TestBuildSections(t *testing.T) {
	stub := findStub(t)
	secs := []Section{
		{".osrel", []byte("ID=pqbranch\n")},
		{".cmdline", []byte("console=ttyS0")},
		{".linux", bytes.Repeat([]byte{1}, 5000)},
		{".initrd", bytes.Repeat([]byte{2}, 3000)},
	}
	img, err := Build(stub, secs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("result is not a PE file: %v", err)
	}
	var lastEnd uint32
	for _, want := range secs {
		s := f.Section(want.Name)
		if s == nil {
			t.Fatalf("section %s missing", want.Name)
		}
		got, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:s.VirtualSize], want.Data) {
			t.Errorf("section %s: data differs", want.Name)
		}
		if s.VirtualAddress < lastEnd || s.VirtualAddress%4096 != 0 {
			t.Errorf("section %s at %#x overlaps or is unaligned (previous end %#x)", want.Name, s.VirtualAddress, lastEnd)
		}
		lastEnd = s.VirtualAddress + s.VirtualSize
	}
	if oh := f.OptionalHeader.(*pe.OptionalHeader64); oh.SizeOfImage < lastEnd {
		t.Errorf("SizeOfImage %#x < end of last section %#x", oh.SizeOfImage, lastEnd)
	}
	again, _ := Build(stub, secs)
	if !bytes.Equal(img, again) {
		t.Error("two builds differ")
	}
}

func TestBuildRejectsNonPE(t *testing.T) {
	if _, err := Build([]byte("not a PE image at all, just text........................................"), nil); err == nil {
		t.Fatal("want error")
	}
}
