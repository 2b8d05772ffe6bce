package provision

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Label is the FAT volume label that marks a provisioning stick.
const Label = "PQBRANCH"

// FileName is the config file a stick holds in its root directory.
const FileName = "pqbranch.json"

// MaxConfigSize bounds what is read from a stick: a config is a few
// kilobytes, and the stick is untrusted input. It equals what config.Load
// accepts from /data.
const MaxConfigSize = 1 << 20

// StickSize is the size of the image WriteStick makes: small enough to dd
// in a blink, large enough for a FAT16 volume with the standard cluster
// count (FAT32 would need at least 65525 clusters, about 33 MiB).
const StickSize = 8 << 20

const sector = 512

// Layout is how a stick's FAT volume sits on the device.
type Layout int

const (
	// Partitioned is an MBR with one FAT partition starting at 1 MiB: what
	// Windows, macOS ("MS-DOS (FAT)", Master Boot Record) and Linux's
	// disk tools make of a stick.
	Partitioned Layout = iota
	// Superfloppy is a FAT volume over the whole device, no partition
	// table: what mkfs.vfat /dev/sdX and some factory-formatted sticks have.
	Superfloppy
)

func (l Layout) String() string {
	switch l {
	case Partitioned:
		return "partitioned"
	case Superfloppy:
		return "superfloppy"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// stickSpec describes an image to write: WriteStick's, or the odd ones the
// tests need (no label, FAT32, a file too big).
type stickSpec struct {
	size   int64
	layout Layout
	fat    FATType // FAT12, FAT16 or FAT32
	label  string
	// bootLabelOnly drops the root directory's volume-label entry, leaving
	// the label only in the boot sector (as some formatters do).
	bootLabelOnly bool
	files         map[string][]byte // root directory entries
	dirs          []string          // root directory subdirectories
}

// WriteStick writes a raw disk image to path (replacing any file there)
// for a provisioning stick: an MBR with one FAT16 partition labelled
// PQBRANCH holding config as /pqbranch.json. dd it onto a stick, or attach
// it to QEMU as a USB mass-storage device. The config is written as given,
// not validated: `pqbuild stick` validates first, and tests need sticks
// with bad configs.
func WriteStick(path string, config []byte) error {
	if len(config) > MaxConfigSize {
		return fmt.Errorf("provision: stick %s: config is %d bytes, expected at most %d", path, len(config), MaxConfigSize)
	}
	return writeStick(path, stickSpec{
		size:   StickSize,
		layout: Partitioned,
		fat:    FAT16,
		label:  Label,
		files:  map[string][]byte{FileName: config},
	})
}

// writeStick builds the image in a temporary file beside path and renames
// it into place, so path never holds half an image. It refuses to replace
// anything but a regular file: renaming over /dev/sdb would not write the
// stick, it would replace its device node.
func writeStick(path string, s stickSpec) error {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("provision: stick %s: is a %v, expected a regular file or none (write the image, then dd it to the stick)", path, fi.Mode().Type())
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("provision: stick %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := fillStick(tmp, s); err != nil {
		tmp.Close()
		return fmt.Errorf("provision: stick %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("provision: stick %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("provision: stick %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("provision: stick %s: %w", path, err)
	}
	return nil
}

func fillStick(f *os.File, s stickSpec) error {
	if err := f.Truncate(s.size); err != nil {
		return err
	}
	b := file.New(f, false)
	start, size := int64(0), s.size
	if s.layout == Partitioned {
		// 1 MiB alignment, as every current partitioning tool does.
		start = 1 << 20
		size = s.size - start
		typ := mbr.Fat16bLBA
		if s.fat == FAT32 {
			typ = mbr.Fat32LBA
		}
		t := &mbr.Table{
			LogicalSectorSize:  sector,
			PhysicalSectorSize: sector,
			Partitions: []*mbr.Partition{{
				Type:  typ,
				Start: uint32(start / sector),
				Size:  uint32(size / sector),
			}},
		}
		if err := t.Write(f, s.size); err != nil {
			return fmt.Errorf("write MBR: %w", err)
		}
	}
	var fs filesystem.FileSystem
	var err error
	switch s.fat {
	case FAT12:
		fs, err = fat12.Create(b, size, start, sector, s.label, true)
	case FAT16:
		fs, err = fat16.Create(b, size, start, sector, s.label, true)
	case FAT32:
		fs, err = fat32.Create(b, size, start, sector, s.label, true)
	default:
		return fmt.Errorf("file system %v: expected FAT12, FAT16 or FAT32", s.fat)
	}
	if err != nil {
		return fmt.Errorf("create FAT: %w", err)
	}
	if s.bootLabelOnly {
		if err := clearRootLabel(f, start, size); err != nil {
			return err
		}
	}
	for _, d := range s.dirs {
		if err := fs.Mkdir("/" + d); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	for name, data := range s.files {
		w, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return finishBootSector(f, s, start, size)
}

// finishBootSector does what go-diskfs leaves undone, so fsck.fat and
// Windows find nothing to repair: the volume serial (derived from the
// contents, so one config gives one image), the partition offset as
// "hidden sectors", and, on FAT16, cluster 2, which go-diskfs marks used
// although the FAT16 root directory lives outside the clusters.
func finishBootSector(f *os.File, s stickSpec, start, size int64) error {
	v, err := openFAT(f, start, size)
	if err != nil {
		return fmt.Errorf("read back the boot sector: %w", err)
	}
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(s.files)) {
		h.Write([]byte(name))
		h.Write(s.files[name])
	}
	serialAt := int64(0x27)
	copies := []int64{start}
	if v.typ == FAT32 {
		serialAt = 0x43
		copies = append(copies, start+6*sector) // the backup boot sector
	}
	for _, at := range copies {
		if _, err := f.WriteAt(h.Sum(nil)[:4], at+serialAt); err != nil {
			return err
		}
		var hidden [4]byte
		binary.LittleEndian.PutUint32(hidden[:], uint32(start/sector))
		if _, err := f.WriteAt(hidden[:], at+0x1c); err != nil {
			return err
		}
	}
	if v.typ == FAT16 && !usesCluster2(v) {
		fatBytes := (v.rootStart - v.fatStart) / 2 // two FATs before the root directory
		for _, fat := range []int64{v.fatStart, v.fatStart + fatBytes} {
			if _, err := f.WriteAt([]byte{0, 0}, start+fat+2*2); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}

// clearRootLabel removes the volume-label entry go-diskfs puts first in the
// root directory, leaving the label only in the boot sector.
func clearRootLabel(f *os.File, start, size int64) error {
	off, err := rootDirOffset(f, start, size)
	if err != nil {
		return err
	}
	ent := make([]byte, 32)
	if _, err := f.ReadAt(ent, off); err != nil {
		return err
	}
	if ent[11]&0x08 == 0 {
		return fmt.Errorf("expected a volume-label entry first in the root directory, found %q", ent[:11])
	}
	ent[0] = 0xe5 // deleted
	_, err = f.WriteAt(ent, off)
	return err
}

// rootDirOffset returns where the root directory of the FAT volume at
// [start, start+size) lies on f.
func rootDirOffset(f *os.File, start, size int64) (int64, error) {
	v, err := openFAT(f, start, size)
	if err != nil {
		return 0, err
	}
	if v.typ == FAT32 {
		return start + v.dataStart + int64(v.rootCluster-2)*v.clusterBytes, nil
	}
	return start + v.rootStart, nil
}

// usesCluster2 reports whether a root directory entry starts at cluster 2
// (go-diskfs's FAT16 never gives it out; this guards the clean-up above).
func usesCluster2(v *fatVolume) bool {
	entries, _, err := v.root()
	if err != nil {
		return true
	}
	for _, e := range entries {
		if e.cluster == 2 {
			return true
		}
	}
	return false
}
