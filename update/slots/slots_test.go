package slots

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
	"github.com/pqbranch/pqbranch/update/efiboot"
)

const (
	diskSize = 8 << 20
	guidA    = "0B7C5A8E-1D2F-4E6A-9B3C-5D7E9F1A2B3C"
	guidB    = "6E4D2C1B-0A9F-4E8D-8C7B-6A5F4E3D2C1B"
	guidData = "12345678-9ABC-4DEF-8123-456789ABCDEF"
)

// part is one partition of a test disk.
type part struct {
	name, guid string
	start, end uint64
}

var pqbParts = []part{
	{layout.SlotA, guidA, 2048, 4095},
	{layout.SlotB, guidB, 4096, 6143},
	{layout.Data, guidData, 6144, 16383 - 34},
}

// world is a fake /sys/class/block and /dev.
type world struct {
	sys, dev string
}

func newWorld(t *testing.T) world {
	root := t.TempDir()
	w := world{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	for _, d := range []string{filepath.Join(w.sys, "class", "block"), w.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// addDisk writes a GPT disk image at dev/name with go-diskfs, a sysfs
// tree like the kernel's (class/block/<dev> linking into devices/), and a
// plain file per partition standing in for its block device. kernelNames
// overrides the PARTNAME the kernel reports, by partition number.
func (w world) addDisk(t *testing.T, name string, parts []part, kernelNames map[int]string) {
	t.Helper()
	img := filepath.Join(w.dev, name)
	d, err := diskfs.Create(img, diskSize, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true}
	for i, p := range parts {
		table.Partitions = append(table.Partitions, &gpt.Partition{Index: i + 1, Start: p.start, End: p.end, Type: gpt.LinuxFilesystem, Name: p.name, GUID: p.guid})
	}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	d.Close()
	diskDir := filepath.Join(w.sys, "devices", "virtual", "block", name)
	w.uevent(t, diskDir, "DEVNAME="+name+"\nDEVTYPE=disk\n")
	w.link(t, name, diskDir)
	for i, p := range parts {
		pn := name + string(rune('1'+i))
		kname := p.name
		if k, ok := kernelNames[i+1]; ok {
			kname = k
		}
		dir := filepath.Join(diskDir, pn)
		w.uevent(t, dir, "MAJOR=254\nDEVNAME="+pn+"\nDEVTYPE=partition\nPARTN="+string(rune('1'+i))+"\nPARTNAME="+kname+"\n")
		w.link(t, pn, dir)
		f, err := os.Create(filepath.Join(w.dev, pn))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(int64(p.end-p.start+1) * 512); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

func (w world) uevent(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uevent"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (w world) link(t *testing.T, name, target string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(w.sys, "class", "block", name)); err != nil {
		t.Fatal(err)
	}
}

func (w world) finder() Finder {
	return Finder{SysClassBlock: filepath.Join(w.sys, "class", "block"), DevDir: w.dev}
}

func TestFind(t *testing.T) {
	w := newWorld(t)
	w.addDisk(t, "vda", pqbParts, nil)
	// A disk without our partitions is ignored.
	w.addDisk(t, "vdb", []part{{"other", guidData, 2048, 4095}}, nil)
	d, err := w.finder().Find()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Partition{
		"A": {Name: layout.SlotA, Dev: filepath.Join(w.dev, "vda1"), Number: 1, GUID: strings.ToLower(guidA), StartLBA: 2048, SizeLBA: 2048, Size: 1 << 20},
		"B": {Name: layout.SlotB, Dev: filepath.Join(w.dev, "vda2"), Number: 2, GUID: strings.ToLower(guidB), StartLBA: 4096, SizeLBA: 2048, Size: 1 << 20},
	}
	if d.Dev != filepath.Join(w.dev, "vda") || d.SectorSize != 512 || d.Slots["A"] != want["A"] || d.Slots["B"] != want["B"] {
		t.Fatalf("Find = %+v", d)
	}
	if d.Data.Name != layout.Data || d.Data.Number != 3 || d.Data.StartLBA != 6144 || d.Data.SizeLBA != 16383-34-6144+1 {
		t.Fatalf("data partition %+v", d.Data)
	}
	bp := d.BootPartitions()
	if len(bp) != 2 || bp[0] != (efiboot.SlotPartition{Slot: "A", PartNumber: 1, PartGUID: strings.ToLower(guidA), StartLBA: 2048, SizeLBA: 2048}) || bp[1].Slot != "B" || bp[1].StartLBA != 4096 {
		t.Fatalf("BootPartitions = %+v", bp)
	}
	if d.SlotOf(guidB) != "B" || d.SlotOf(guidData) != "" {
		t.Fatal("SlotOf")
	}
	// The partitions feed efiboot as they are.
	m := &efiboot.Manager{Vars: efiboot.NewMemVars(), Slots: bp, Booted: "A"}
	if _, err := m.Ensure(); err != nil {
		t.Fatalf("efiboot rejects the partitions: %v", err)
	}
}

func TestFindRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, w world)
		want  string
	}{
		{"no disk", func(*testing.T, world) {}, "no disk"},
		{"no data partition", func(t *testing.T, w world) { w.addDisk(t, "vda", pqbParts[:2], nil) }, "no partition named pqb-data"},
		{"kernel and GPT disagree", func(t *testing.T, w world) {
			w.addDisk(t, "vda", pqbParts, map[int]string{1: layout.SlotB, 2: layout.SlotA})
		}, `is "pqb-slot-a" in the GPT but "pqb-slot-b" to the kernel`},
		{"two pqbranch disks", func(t *testing.T, w world) {
			w.addDisk(t, "vda", pqbParts, nil)
			w.addDisk(t, "sda", pqbParts, nil)
		}, "set Finder.BootPartGUID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.build(t, w)
			d, err := w.finder().Find()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Find = %+v, %v; want an error containing %q", d, err, tc.want)
			}
		})
	}
}

func TestFindPicksBootDisk(t *testing.T) {
	w := newWorld(t)
	w.addDisk(t, "vda", pqbParts, nil)
	stick := []part{
		{layout.SlotA, "AAAAAAAA-1D2F-4E6A-9B3C-5D7E9F1A2B3C", 2048, 4095},
		{layout.SlotB, "BBBBBBBB-0A9F-4E8D-8C7B-6A5F4E3D2C1B", 4096, 6143},
		{layout.Data, "CCCCCCCC-9ABC-4DEF-8123-456789ABCDEF", 6144, 8191},
	}
	w.addDisk(t, "sda", stick, nil)
	for _, tc := range []struct{ guid, dev string }{{guidB, "vda"}, {strings.ToLower(stick[0].guid), "sda"}} {
		f := w.finder()
		f.BootPartGUID = tc.guid
		d, err := f.Find()
		if err != nil || d.Dev != filepath.Join(w.dev, tc.dev) {
			t.Fatalf("boot partition %s: Find = %+v, %v; want %s", tc.guid, d, err, tc.dev)
		}
	}
}

func TestOther(t *testing.T) {
	for in, want := range map[string]string{"A": "B", "B": "A", "": "", "C": ""} {
		if got := Other(in); got != want {
			t.Errorf("Other(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestOpenSlot(t *testing.T) {
	w := newWorld(t)
	w.addDisk(t, "vda", pqbParts, nil)
	d, err := w.finder().Find()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(d.Slots["B"])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != 1<<20 {
		t.Fatalf("Size = %d", s.Size())
	}
	testDevice(t, s)

	// A device whose size is not the partition's is someone else's.
	wrong := d.Slots["A"]
	wrong.Size += 512
	if s, err := Open(wrong); err == nil {
		s.Close()
		t.Fatal("Open accepted a device of the wrong size")
	}
}

func TestCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slot.img")
	s, err := CreateFile(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	testDevice(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 1<<20 {
		t.Fatalf("file after writes: %v, %v", st, err)
	}
}

// testDevice checks the Device contract on a 1 MiB slot.
func testDevice(t *testing.T, s Device) {
	t.Helper()
	size := s.Size()
	data := bytes.Repeat([]byte("pqbranch"), 512)
	if n, err := s.WriteAt(data, size-int64(len(data))); err != nil || n != len(data) {
		t.Fatalf("write up to the end: %d, %v", n, err)
	}
	for _, tc := range []struct {
		off int64
		n   int
	}{{size - 10, 11}, {size, 1}, {-1, 1}, {size + 512, 0}} {
		if n, err := s.WriteAt(make([]byte, tc.n), tc.off); !errors.Is(err, ErrBeyondEnd) || n != 0 {
			t.Errorf("write of %d bytes at %d: %d, %v; want ErrBeyondEnd", tc.n, tc.off, n, err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if n, err := s.ReadAt(got, size-int64(len(data))); err != nil || n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d, %v, equal=%v", n, err, bytes.Equal(got, data))
	}
	// The refused write at size-10 changed nothing.
	if n, err := s.ReadAt(got[:16], size-16); n != 16 || (err != nil && err != io.EOF) || !bytes.Equal(got[:16], data[len(data)-16:]) {
		t.Fatalf("tail after a refused write: %q, %v", got[:16], err)
	}
	if n, err := s.ReadAt(make([]byte, 20), size-10); n != 10 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v; want 10, EOF", n, err)
	}
}
