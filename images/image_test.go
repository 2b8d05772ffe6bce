package images

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
)

func TestWriteRawLayout(t *testing.T) {
	uki := bytes.Repeat([]byte("pqbranch-uki"), 100000)
	path := filepath.Join(t.TempDir(), "disk.img")
	spec := Spec{Board: "qemu-x86_64", Version: "1.2.3", SizeMiB: 512, UKI: uki, Epoch: 1700000000}
	if err := WriteRaw(path, spec, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	table := pt.(*gpt.Table)
	if table.GUID != ID(spec.Board, spec.Version, "disk").UUID() {
		t.Errorf("disk GUID %s is not derived from board and version", table.GUID)
	}
	want := []struct {
		name string
		typ  gpt.Type
		mib  uint64
	}{{layout.SlotA, gpt.EFISystemPartition, SlotMiB}, {layout.SlotB, gpt.EFISystemPartition, SlotMiB}, {layout.Data, gpt.LinuxFilesystem, 0}}
	if len(table.Partitions) != len(want) {
		t.Fatalf("%d partitions, want %d", len(table.Partitions), len(want))
	}
	for i, w := range want {
		p := table.Partitions[i]
		if p.Name != w.name || p.Type != w.typ {
			t.Errorf("partition %d = %s %s, want %s %s", i+1, p.Name, p.Type, w.name, w.typ)
		}
		if w.mib != 0 && p.Size != w.mib*MiB {
			t.Errorf("%s is %d bytes, want %d MiB", p.Name, p.Size, w.mib)
		}
		if p.Start%2048 != 0 {
			t.Errorf("%s starts at sector %d, not MiB-aligned", p.Name, p.Start)
		}
	}
	// Both slots carry the UKI at both paths, so any slot boots from an
	// empty NVRAM, and both are the one slot image, byte for byte.
	for i, files := range []map[string]bool{
		{layout.UKIPath: true, layout.RemovablePath: true},
		{layout.UKIPath: true, layout.RemovablePath: true},
	} {
		fs, err := d.GetFilesystem(i + 1)
		if err != nil {
			t.Fatalf("slot %d: %v", i+1, err)
		}
		for p, present := range files {
			f, err := fs.OpenFile(p, os.O_RDONLY)
			if !present {
				if err == nil {
					t.Errorf("slot %d carries %s; only slot A may, so an empty NVRAM boots A", i+1, p)
				}
				continue
			}
			if err != nil {
				t.Fatalf("slot %d: %s: %v", i+1, p, err)
			}
			got, _ := io.ReadAll(f)
			if !bytes.Equal(got, uki) {
				t.Errorf("slot %d: %s differs from the UKI", i+1, p)
			}
		}
	}
	// The FAT volume ids are derived, not zero.
	raw, _ := os.ReadFile(path)
	fatID := ID(spec.Board, spec.Version, "fat")
	for i, start := range []uint64{table.Partitions[0].Start, table.Partitions[1].Start} {
		id := binary.LittleEndian.Uint32(raw[start*512+0x43:])
		if id != binary.LittleEndian.Uint32(fatID[:4]) {
			t.Errorf("slot %d volume id %08x not derived", i+1, id)
		}
	}
	a, b := table.Partitions[0], table.Partitions[1]
	slotA, slotB := raw[a.Start*512:][:a.Size], raw[b.Start*512:][:b.Size]
	if !bytes.Equal(slotA, slotB) {
		t.Error("the two slots of a fresh disk differ")
	}
	slot := filepath.Join(t.TempDir(), "slot.img")
	if err := WriteSlot(slot, spec); err != nil {
		t.Fatal(err)
	}
	if img, _ := os.ReadFile(slot); !bytes.Equal(img, slotA) {
		t.Error("WriteSlot's image differs from the slot on the disk: an update would not reproduce the flashed bits")
	}
}

func TestWriteRawTooSmall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := WriteRaw(path, Spec{Board: "b", Version: "v", SizeMiB: 100}, io.Discard); err == nil {
		t.Fatal("a 100 MiB disk was accepted")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a failed write left the image")
	}
}
