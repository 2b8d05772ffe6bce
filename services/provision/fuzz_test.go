package provision

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// smallStick is a stick small enough to seed a fuzzer with: a 128 KiB FAT12
// superfloppy, or the same behind an MBR.
func smallStick(t testing.TB, layout Layout, files map[string][]byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "small.img")
	if err := writeStick(p, stickSpec{size: 128 << 10, layout: layout, fat: FAT12, label: Label, files: files}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// behindMBR puts a volume image into partition 1 of an MBR, at sector 2.
func behindMBR(vol []byte) []byte {
	mbr := make([]byte, 1024)
	mbr[446+4] = 0x01
	binary.LittleEndian.PutUint32(mbr[446+8:], 2)
	binary.LittleEndian.PutUint32(mbr[446+12:], uint32(len(vol)/512))
	mbr[510], mbr[511] = 0x55, 0xaa
	return append(mbr, vol...)
}

// behindGPT puts a volume image behind a protective MBR and a GPT of n
// entries, right after the entries, as each of the partitions numbered
// parts; the other entries are unused.
func behindGPT(vol []byte, n int, parts ...int) []byte {
	at := 2 + (n*128+511)/512
	disk := make([]byte, at*512, at*512+len(vol))
	disk[446+4] = 0xee
	disk[510], disk[511] = 0x55, 0xaa
	copy(disk[512:], "EFI PART")
	binary.LittleEndian.PutUint64(disk[512+0x48:], 2)
	binary.LittleEndian.PutUint32(disk[512+0x50:], uint32(n))
	binary.LittleEndian.PutUint32(disk[512+0x54:], 128)
	for _, i := range parts {
		e := disk[1024+128*(i-1):]
		e[0] = 0xa2 // any non-zero type GUID
		binary.LittleEndian.PutUint64(e[0x20:], uint64(at))
		binary.LittleEndian.PutUint64(e[0x28:], uint64(at+len(vol)/512-1))
	}
	return append(disk, vol...)
}

// fuzzDevice is the size of the device a fuzz input describes the start of.
const fuzzDevice = 256 << 10

// FuzzReadVolumes feeds the stick reader (partition tables, boot sectors,
// directories, cluster chains) any bytes: it must neither panic nor return
// more than MaxConfigSize, and must end (a looping chain is bounded).
func FuzzReadVolumes(f *testing.F) {
	cfg := []byte(`{"serial": 1, "hostname": "branch-7"}`)
	long := bytes.Repeat([]byte("x"), 3000) // several clusters
	vol := smallStick(f, Superfloppy, map[string][]byte{FileName: cfg})
	for _, seed := range [][]byte{
		vol,
		smallStick(f, Superfloppy, map[string][]byte{FileName: long, "other.txt": cfg}),
		behindMBR(vol),
		behindGPT(vol, 4, 2),
	} {
		f.Add(bytes.TrimRight(seed, "\x00"))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input is the start of a 256 KiB device whose rest is zeros:
		// seeds stay small (the fuzzer slows down on big inputs) while the
		// volumes they describe still fit.
		dev := data
		if len(dev) < fuzzDevice {
			dev = append(bytes.Clone(data), make([]byte, fuzzDevice-len(data))...)
		}
		for _, v := range readVolumes(bytes.NewReader(dev), int64(len(dev))) {
			_ = v.isStick()
			b, err := v.readConfig()
			if err == nil && len(b) > MaxConfigSize {
				t.Fatalf("read %d bytes, more than MaxConfigSize", len(b))
			}
		}
	})
}

// TestSmallStickSeeds: the fuzz seeds are what they claim, so the fuzzer
// starts from sticks the reader accepts, not from noise.
func TestSmallStickSeeds(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 3000)
	raw := smallStick(t, Superfloppy, map[string][]byte{FileName: long})
	v := readVolumes(bytes.NewReader(raw), int64(len(raw)))
	if len(v) != 1 || !v[0].isStick() || v[0].fat.typ != FAT12 || v[0].where != "whole device" {
		t.Fatalf("volumes %+v, want one FAT12 stick over the whole device", v)
	}
	got, err := v[0].readConfig()
	if err != nil || !bytes.Equal(got, long) {
		t.Fatalf("read %d bytes, %v; want the 3000-byte file", len(got), err)
	}
}

// TestPartitionTables: a volume is found in an MBR partition and in a GPT
// partition (what macOS's "GUID Partition Map" makes), under its number.
func TestPartitionTables(t *testing.T) {
	cfg := []byte(`{"serial": 1}`)
	vol := smallStick(t, Superfloppy, map[string][]byte{FileName: cfg})
	for _, tc := range []struct {
		name  string
		disk  []byte
		where string
	}{
		{"mbr", behindMBR(vol), "partition 1"},
		{"gpt", behindGPT(vol, 4, 2), "partition 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := readVolumes(bytes.NewReader(tc.disk), int64(len(tc.disk)))
			if len(v) != 1 || v[0].where != tc.where || !v[0].isStick() {
				t.Fatalf("volumes %+v, want the stick in %s", v, tc.where)
			}
			if got, err := v[0].readConfig(); err != nil || !bytes.Equal(got, cfg) {
				t.Fatalf("read %q, %v", got, err)
			}
		})
	}
}

// TestCorruptChains: a cluster chain that loops, or leaves the volume, ends
// in an error or in a bounded read, never a hang.
func TestCorruptChains(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 3000)
	base := smallStick(t, Superfloppy, map[string][]byte{FileName: long})
	v := readVolumes(bytes.NewReader(base), int64(len(base)))[0]
	entries, _, err := v.fat.root()
	if err != nil {
		t.Fatal(err)
	}
	first := entries[0].cluster
	// FAT12 entry of cluster c: 12 bits at byte c*1.5 of the FAT.
	setFAT12 := func(img []byte, c, next uint32) {
		off := v.fat.fatStart + int64(c) + int64(c)/2
		w := binary.LittleEndian.Uint16(img[off:])
		if c&1 == 1 {
			w = w&0x000f | uint16(next)<<4
		} else {
			w = w&0xf000 | uint16(next)
		}
		binary.LittleEndian.PutUint16(img[off:], w)
	}
	t.Run("loop", func(t *testing.T) {
		img := bytes.Clone(base)
		setFAT12(img, first, first) // the file's first cluster points to itself
		got, err := readVolumes(bytes.NewReader(img), int64(len(img)))[0].readConfig()
		if err != nil || len(got) != len(long) {
			t.Fatalf("read %d bytes, %v; want a bounded read of the file's size", len(got), err)
		}
	})
	t.Run("out of range", func(t *testing.T) {
		img := bytes.Clone(base)
		setFAT12(img, first, 0xff0)
		if _, err := readVolumes(bytes.NewReader(img), int64(len(img)))[0].readConfig(); err == nil {
			t.Fatal("a chain into reserved cluster numbers read without error")
		}
	})
	t.Run("short chain", func(t *testing.T) {
		img := bytes.Clone(base)
		setFAT12(img, first, 0xfff) // ends after one cluster; the entry says 3000 bytes
		if _, err := readVolumes(bytes.NewReader(img), int64(len(img)))[0].readConfig(); err == nil {
			t.Fatal("a chain shorter than the file read without error")
		}
	})
	t.Run("truncated device", func(t *testing.T) {
		img := base[:len(base)/2]
		if v := readVolumes(bytes.NewReader(img), int64(len(img))); len(v) != 0 {
			t.Fatalf("a volume larger than its device was accepted: %+v", v)
		}
	})
}

// TestFAT12TooShort: a FAT12 table one half entry short of its clusters
// (681 clusters plus the two reserved entries need 1024.5 bytes, the table
// has 1024) is refused, as Linux refuses it: the last cluster's entry would
// be read from beyond the table.
func TestFAT12TooShort(t *testing.T) {
	const fatSectors, clusters = 2, 681
	// reserved sector, FAT, one sector of root directory, then the clusters
	const total = 1 + fatSectors + 1 + clusters
	for _, tc := range []struct {
		fatSectors int
		ok         bool
	}{{fatSectors, false}, {fatSectors + 1, true}} {
		dev := make([]byte, (total+tc.fatSectors-fatSectors)*512)
		b := dev[:512]
		binary.LittleEndian.PutUint16(b[0x0b:], 512)
		b[0x0d] = 1 // sectors per cluster
		binary.LittleEndian.PutUint16(b[0x0e:], 1)
		b[0x10] = 1                                 // FATs
		binary.LittleEndian.PutUint16(b[0x11:], 16) // root entries: one sector
		binary.LittleEndian.PutUint16(b[0x13:], uint16(len(dev)/512))
		b[0x15] = 0xf8
		binary.LittleEndian.PutUint16(b[0x16:], uint16(tc.fatSectors))
		v, err := openFAT(bytes.NewReader(dev), 0, int64(len(dev)))
		if tc.ok && (err != nil || v.typ != FAT12 || v.clusters != clusters) {
			t.Errorf("%d FAT sectors: %+v, %v; want FAT12 with %d clusters", tc.fatSectors, v, err, clusters)
		}
		if !tc.ok && err == nil {
			t.Errorf("%d FAT sectors for %d clusters accepted", tc.fatSectors, clusters)
		}
	}
}
