// Package images writes the pqbranch disk image: a GPT disk with two
// bootable slots and a persistent data partition, as an ordinary file, with
// no root privileges and no loop devices.
//
// # A/B switching
//
// Each slot is its own EFI system partition holding the slot's unified
// kernel image at layout.UKIPath. Slot A also carries it at the removable
// media path, which is what firmware with an empty NVRAM boots: a freshly
// flashed disk always comes up in A.
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
}

// WriteRaw writes the image to path atomically: it is written beside path
// and renamed into place only when complete.
func WriteRaw(path string, s Spec, progress io.Writer) error {
	if s.SizeMiB < 2*SlotMiB+64 {
		return fmt.Errorf("images: disk of %d MiB is too small for two %d MiB slots and data", s.SizeMiB, SlotMiB)
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := writeRaw(tmp, s, progress); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func writeRaw(file string, s Spec, progress io.Writer) error {
	// go-diskfs stamps FAT directory entries with SOURCE_DATE_EPOCH.
	os.Setenv("SOURCE_DATE_EPOCH", fmt.Sprint(s.Epoch))
	size := int64(s.SizeMiB) * MiB
	d, err := diskfs.Create(file, size, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("images: create %s: %w", file, err)
	}
	err = fill(d, s, size, progress)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return setVolumeIDs(file, s, []uint64{firstLBA, firstLBA + SlotMiB*MiB/sectorSize})
}

func fill(d *disk.Disk, s Spec, size int64, progress io.Writer) error {

	slotSectors := uint64(SlotMiB * MiB / sectorSize)
	aStart := uint64(firstLBA)
	bStart := aStart + slotSectors
	dataStart := bStart + slotSectors
	dataEnd := uint64(size/sectorSize) - gptBackup - 1
	dataEnd -= (dataEnd + 1) % (MiB / sectorSize) // whole MiB
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               ID(s.Board, s.Version, "disk").UUID(),
		Partitions: []*gpt.Partition{
			{Index: 1, Start: aStart, End: bStart - 1, Type: espType, Name: layout.SlotA, GUID: ID(s.Board, s.Version, layout.SlotA).UUID()},
			{Index: 2, Start: bStart, End: dataStart - 1, Type: espType, Name: layout.SlotB, GUID: ID(s.Board, s.Version, layout.SlotB).UUID()},
			{Index: 3, Start: dataStart, End: dataEnd, Type: linuxType, Name: layout.Data, GUID: ID(s.Board, s.Version, layout.Data).UUID()},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("images: partition: %w", err)
	}
	for i, slot := range []struct {
		label     string
		removable bool
	}{{"PQB-A", true}, {"PQB-B", false}} {
		fmt.Fprintf(progress, "writing slot %s (%d MiB)\n", slot.label[4:], SlotMiB)
		fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: i + 1, FSType: filesystem.TypeFat32, VolumeLabel: slot.label, Reproducible: true})
		if err != nil {
			return fmt.Errorf("images: FAT on slot %s: %w", slot.label, err)
		}
		paths := []string{layout.UKIPath}
		if slot.removable {
			paths = append(paths, layout.RemovablePath)
		}
		for _, p := range paths {
			if err := writeFile(fs, p, s.UKI); err != nil {
				return fmt.Errorf("images: slot %s: %w", slot.label, err)
			}
		}
	}
	// The data partition stays empty: the appliance creates its file system
	// on first boot.
	return nil
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

// setVolumeIDs writes FAT32 volume serial numbers derived from board and
// version into both boot sectors of each slot; go-diskfs leaves them zero in
// reproducible mode.
func setVolumeIDs(file string, s Spec, starts []uint64) error {
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, start := range starts {
		id := ID(s.Board, s.Version, fmt.Sprintf("fat%d", i))
		for _, sector := range []uint64{0, 6} { // boot sector and its backup
			if _, err := f.WriteAt(id[:4], int64((start+sector)*sectorSize+0x43)); err != nil {
				return fmt.Errorf("images: volume id: %w", err)
			}
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
