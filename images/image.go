// Package images writes the pqbranch disk image: a GPT disk with two
// bootable slots and a persistent data partition, as an ordinary file, with
// no root privileges and no loop devices.
//
// # A/B switching
//
// Each slot is its own EFI system partition holding the slot's unified
// kernel image at layout.UKIPath and at the removable media path, which is
// what firmware with an empty NVRAM boots. Both slots of a fresh disk hold
// the same bytes; firmware tries partitions in order, so a freshly flashed
// disk comes up in A, and a box whose NVRAM was wiped still boots.
//
// Updates steer the firmware the way RAUC's EFI backend does. The running
// system creates one Boot#### entry per slot and keeps BootOrder listing the
// committed slot first. A trial boot of the other slot sets BootNext, which
// the firmware consumes on that one boot: if the trial slot hangs (the
// watchdog resets the box) or crashes (panic= resets it), the next boot
// follows BootOrder back to the committed slot. Committing rewrites BootOrder,
// a single UEFI variable write, which the firmware performs atomically.
//
// Writing the inactive slot touches only that slot's partition, so a power
// cut during an update can never damage the slot that is running.
package images

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
)

// Sizes of the layout. A slot holds one UKI (about 25 MiB today), plus the
// removable-path copy on slot A: 128 MiB leaves room for growth, since slot
// sizes can never change on a deployed box.
const (
	MiB        = 1 << 20
	SlotMiB    = 128
	firstLBA   = 2048 // 1 MiB alignment
	sectorSize = 512
	gptBackup  = 33 // sectors of the backup GPT at the end of the disk
	espType    = gpt.EFISystemPartition
	linuxType  = gpt.LinuxFilesystem
)

// Spec is one disk image.
type Spec struct {
	Board, Version string
	SizeMiB        int
	UKI            []byte
	// Epoch is SOURCE_DATE_EPOCH: every timestamp on the disk.
	Epoch int64
	// Slot, when set, is a slot image WriteSlot already wrote for this
	// spec; WriteRaw then copies it instead of writing another.
	Slot string
}

// WriteRaw writes the image to path atomically: it is written beside path
// and renamed into place only when complete. Both slots hold the same slot
// image (WriteSlot), byte for byte: the slot's identity comes from its GPT
// partition, and an update bundle's payload is exactly that image.
func WriteRaw(path string, s Spec, progress io.Writer) error {
	if s.SizeMiB < 2*SlotMiB+64 {
		return fmt.Errorf("images: disk of %d MiB is too small for two %d MiB slots and data", s.SizeMiB, SlotMiB)
	}
	slot := s.Slot
	if slot == "" {
		slot = path + ".slot.tmp"
		defer os.Remove(slot)
		if err := WriteSlot(slot, s); err != nil {
			return err
		}
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := writeRaw(tmp, slot, s, progress); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// WriteSlot writes one slot's image to path: a FAT32 file system of SlotMiB
// holding the UKI at layout.UKIPath and at the removable-media path, so any
// slot boots from an empty NVRAM. Firmware enumerates partitions in order,
// so a freshly flashed disk comes up in slot A.
func WriteSlot(path string, s Spec) error {
	// go-diskfs stamps FAT directory entries with SOURCE_DATE_EPOCH.
	os.Setenv("SOURCE_DATE_EPOCH", fmt.Sprint(s.Epoch))
	os.Remove(path)
	d, err := diskfs.Create(path, SlotMiB*MiB, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("images: create %s: %w", path, err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeFat32, VolumeLabel: "PQBRANCH", Reproducible: true})
	if err == nil {
		for _, p := range []string{layout.UKIPath, layout.RemovablePath} {
			if err = writeFile(fs, p, s.UKI); err != nil {
				break
			}
		}
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("images: slot image: %w", err)
	}
	return setVolumeID(path, 0, ID(s.Board, s.Version, "fat"))
}

func writeRaw(file, slot string, s Spec, progress io.Writer) error {
	size := int64(s.SizeMiB) * MiB
	d, err := diskfs.Create(file, size, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("images: create %s: %w", file, err)
	}
	err = partition(d, s, size)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The data partition stays empty: the appliance creates its file
	// system on first boot.
	return copySlots(file, slot, progress)
}

// Partition start sectors.
const (
	slotSectors = SlotMiB * MiB / sectorSize
	slotAStart  = firstLBA
	slotBStart  = slotAStart + slotSectors
	dataStart   = slotBStart + slotSectors
)

func partition(d *disk.Disk, s Spec, size int64) error {
	dataEnd := uint64(size/sectorSize) - gptBackup - 1
	dataEnd -= (dataEnd + 1) % (MiB / sectorSize) // whole MiB
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               ID(s.Board, s.Version, "disk").UUID(),
		Partitions: []*gpt.Partition{
			{Index: 1, Start: slotAStart, End: slotBStart - 1, Type: espType, Name: layout.SlotA, GUID: ID(s.Board, s.Version, layout.SlotA).UUID()},
			{Index: 2, Start: slotBStart, End: dataStart - 1, Type: espType, Name: layout.SlotB, GUID: ID(s.Board, s.Version, layout.SlotB).UUID()},
			{Index: 3, Start: dataStart, End: dataEnd, Type: linuxType, Name: layout.Data, GUID: ID(s.Board, s.Version, layout.Data).UUID()},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("images: partition: %w", err)
	}
	return nil
}

// copySlots writes the slot image into both slot partitions of the disk.
func copySlots(file, slot string, progress io.Writer) error {
	src, err := os.Open(slot)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	for _, p := range []struct {
		name  string
		start int64
	}{{"A", slotAStart}, {"B", slotBStart}} {
		fmt.Fprintf(progress, "writing slot %s (%d MiB)\n", p.name, SlotMiB)
		if _, err := io.Copy(io.NewOffsetWriter(dst, p.start*sectorSize), io.NewSectionReader(src, 0, SlotMiB*MiB)); err != nil {
			return fmt.Errorf("images: slot %s: %w", p.name, err)
		}
	}
	return dst.Close()
}

func writeFile(fs filesystem.FileSystem, p string, data []byte) error {
	if err := fs.Mkdir(path.Dir(p)); err != nil {
		return fmt.Errorf("mkdir %s: %w", path.Dir(p), err)
	}
	f, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return f.Close()
}

// setVolumeID writes a FAT32 volume serial number into both boot sectors
// (the boot sector and its backup) of the file system starting at byte off;
// go-diskfs leaves it zero in reproducible mode.
func setVolumeID(file string, off int64, id Identifier) error {
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, sector := range []int64{0, 6} {
		if _, err := f.WriteAt(id[:4], off+sector*sectorSize+0x43); err != nil {
			return fmt.Errorf("images: volume id: %w", err)
		}
	}
	return f.Close()
}

// Identifier is a 16-byte id derived from board, version and a name.
type Identifier [16]byte

// ID derives the id of one disk object. Equal inputs give equal disks;
// distinct boards and versions never share ids.
func ID(board, version, name string) Identifier {
	sum := sha256.Sum256([]byte(strings.Join([]string{"pqbranch", board, version, name}, "\x00")))
	var id Identifier
	copy(id[:], sum[:16])
	id[6] = id[6]&0x0f | 0x40 // RFC 4122 version 4 layout, derived not random
	id[8] = id[8]&0x3f | 0x80
	return id
}

// UUID formats the id as a GUID string.
func (id Identifier) UUID() string {
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16]))
}

// QCOW2 converts a raw image to qcow2 with qemu-img, atomically.
func QCOW2(raw, out string, run func(name string, args ...string) error) error {
	tmp := out + ".tmp"
	os.Remove(tmp)
	if err := run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("images: qcow2: %w", err)
	}
	return os.Rename(tmp, filepath.Clean(out))
}

// SlotReader reads slot A of a disk image that WriteRaw wrote: the slot
// image, exactly the payload of the release's update bundle.
func SlotReader(disk io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(disk, slotAStart*sectorSize, SlotMiB*MiB)
}
