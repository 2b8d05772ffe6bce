// Package slots finds the A/B slot partitions and the data partition on
// the boot disk by their GPT names (images/layout), and opens a slot's
// block device for the update agent to write and read back.
package slots

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
	"github.com/pqbranch/pqbranch/update/efiboot"
)

// Disk is the boot disk.
type Disk struct {
	Dev   string               // /dev/vda
	Slots map[string]Partition // "A", "B"
	Data  Partition
	// SectorSize is the logical block size the LBAs count in.
	SectorSize int64
}

// Partition is one partition of the boot disk.
type Partition struct {
	Name     string // GPT name, "pqb-slot-a"
	Dev      string // /dev/vda1
	Number   uint32 // GPT entry number, from 1 (the kernel's PARTN)
	GUID     string // unique partition GUID, lower case
	StartLBA uint64
	SizeLBA  uint64
	Size     int64 // bytes
}

// Finder locates the boot disk.
type Finder struct {
	SysClassBlock string // /sys/class/block
	DevDir        string // /dev: where the uevent DEVNAMEs live
	// BootPartGUID, if set, is the unique GUID of the partition the
	// firmware loaded us from (LoaderDevicePartUUID). It picks the disk
	// when several carry pqbranch partitions, e.g. an install stick
	// beside the internal disk.
	BootPartGUID string
}

// Find locates the boot disk through /sys/class/block and /dev.
func Find(sysClassBlock string) (*Disk, error) {
	return Finder{SysClassBlock: sysClassBlock, DevDir: "/dev"}.Find()
}

// Other returns the other slot: "B" for "A", "A" for "B", "" otherwise.
func Other(slot string) string {
	switch slot {
	case "A":
		return "B"
	case "B":
		return "A"
	}
	return ""
}

// uevent is a partition as the kernel announces it.
type uevent struct {
	devName, partName, diskDir string
	partN                      uint32
}

// Find scans the block devices for partitions named like ours, groups them
// by disk, and reads the GPT of each candidate disk. A disk qualifies when
// it has both slots and the data partition; more than one qualifying disk
// is an error unless BootPartGUID picks one.
func (f Finder) Find() (*Disk, error) {
	files, err := filepath.Glob(filepath.Join(f.SysClassBlock, "*", "uevent"))
	if err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	byDisk := map[string][]uevent{}
	for _, file := range files {
		ev, err := readUevent(file)
		if err != nil {
			continue // the device went away meanwhile
		}
		name := ev["PARTNAME"]
		if ev["DEVTYPE"] != "partition" || (layout.SlotName(name) == "" && name != layout.Data) || ev["DEVNAME"] == "" {
			continue
		}
		n, err := strconv.ParseUint(ev["PARTN"], 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("slots: %s: PARTN is %q; expected a partition number from 1", file, ev["PARTN"])
		}
		// /sys/class/block/vda1 links to .../block/vda/vda1: the parent
		// directory is the disk.
		real, err := filepath.EvalSymlinks(filepath.Dir(file))
		if err != nil {
			continue
		}
		dir := filepath.Dir(real)
		byDisk[dir] = append(byDisk[dir], uevent{devName: ev["DEVNAME"], partName: name, diskDir: dir, partN: uint32(n)})
	}
	var disks []*Disk
	var problems []string
	for _, dir := range slices.Sorted(maps.Keys(byDisk)) {
		d, err := f.readDisk(dir, byDisk[dir])
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		disks = append(disks, d)
	}
	if f.BootPartGUID != "" {
		want := strings.ToLower(f.BootPartGUID)
		disks = slices.DeleteFunc(disks, func(d *Disk) bool {
			return d.Slots["A"].GUID != want && d.Slots["B"].GUID != want
		})
	}
	switch len(disks) {
	case 1:
		return disks[0], nil
	case 0:
		msg := fmt.Sprintf("slots: no disk under %s has partitions %s, %s and %s", f.SysClassBlock, layout.SlotA, layout.SlotB, layout.Data)
		if f.BootPartGUID != "" {
			msg += " with a slot of GUID " + f.BootPartGUID
		}
		if len(problems) > 0 {
			msg += ": " + strings.Join(problems, "; ")
		}
		return nil, errors.New(msg)
	}
	var devs []string
	for _, d := range disks {
		devs = append(devs, d.Dev)
	}
	return nil, fmt.Errorf("slots: disks %s all carry pqbranch partitions; set Finder.BootPartGUID to pick the boot disk", strings.Join(devs, ", "))
}

// readDisk reads the GPT of the disk in sysfs directory dir and fills in
// the partitions the kernel reported.
func (f Finder) readDisk(dir string, parts []uevent) (*Disk, error) {
	ev, err := readUevent(filepath.Join(dir, "uevent"))
	if err != nil || ev["DEVNAME"] == "" {
		return nil, fmt.Errorf("slots: disk %s: no DEVNAME in its uevent: %v", dir, err)
	}
	dev := filepath.Join(f.DevDir, ev["DEVNAME"])
	d, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("slots: open %s: %w", dev, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("slots: %s: partition table: %w", dev, err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("slots: %s: partition table is %s; expected GPT", dev, pt.Type())
	}
	disk := &Disk{Dev: dev, Slots: map[string]Partition{}, SectorSize: int64(table.LogicalSectorSize)}
	if disk.SectorSize == 0 {
		disk.SectorSize = 512
	}
	for _, u := range parts {
		i := slices.IndexFunc(table.Partitions, func(p *gpt.Partition) bool { return p.Index == int(u.partN) })
		if i < 0 {
			return nil, fmt.Errorf("slots: %s: the kernel reports partition %d (%s), which the GPT lacks", dev, u.partN, u.partName)
		}
		gp := table.Partitions[i]
		// The kernel's view and the disk must agree: a GPT rewritten
		// since the kernel read it names other partitions.
		if gp.Name != u.partName {
			return nil, fmt.Errorf("slots: %s: partition %d is %q in the GPT but %q to the kernel", dev, u.partN, gp.Name, u.partName)
		}
		if gp.End < gp.Start {
			return nil, fmt.Errorf("slots: %s: partition %d ends (LBA %d) before it starts (LBA %d)", dev, u.partN, gp.End, gp.Start)
		}
		p := Partition{
			Name:     u.partName,
			Dev:      filepath.Join(f.DevDir, u.devName),
			Number:   u.partN,
			GUID:     strings.ToLower(gp.GUID),
			StartLBA: gp.Start,
			SizeLBA:  gp.End - gp.Start + 1,
		}
		p.Size = int64(p.SizeLBA) * disk.SectorSize
		if slot := layout.SlotName(u.partName); slot != "" {
			if _, dup := disk.Slots[slot]; dup {
				return nil, fmt.Errorf("slots: %s: two partitions are named %s", dev, u.partName)
			}
			disk.Slots[slot] = p
		} else {
			if disk.Data.Name != "" {
				return nil, fmt.Errorf("slots: %s: two partitions are named %s", dev, u.partName)
			}
			disk.Data = p
		}
	}
	for _, need := range []string{"A", "B"} {
		if _, ok := disk.Slots[need]; !ok {
			return nil, fmt.Errorf("slots: %s: no partition named %s", dev, map[string]string{"A": layout.SlotA, "B": layout.SlotB}[need])
		}
	}
	if disk.Data.Name == "" {
		return nil, fmt.Errorf("slots: %s: no partition named %s", dev, layout.Data)
	}
	return disk, nil
}

// BootPartitions describes the slots for efiboot.Manager.
func (d *Disk) BootPartitions() []efiboot.SlotPartition {
	var out []efiboot.SlotPartition
	for _, slot := range []string{"A", "B"} {
		p := d.Slots[slot]
		out = append(out, efiboot.SlotPartition{Slot: slot, PartNumber: p.Number, PartGUID: p.GUID, StartLBA: p.StartLBA, SizeLBA: p.SizeLBA})
	}
	return out
}

// SlotOf returns the slot whose partition has the unique GUID guid, ""
// when none has.
func (d *Disk) SlotOf(guid string) string {
	for slot, p := range d.Slots {
		if strings.EqualFold(p.GUID, guid) {
			return slot
		}
	}
	return ""
}

// PartitionDev returns the device node (under devDir) of the partition
// whose GPT name is name, from the kernel's uevent files, or "" when no
// partition has that name yet (block devices probe asynchronously).
func PartitionDev(sysClassBlock, devDir, name string) (string, error) {
	files, err := filepath.Glob(filepath.Join(sysClassBlock, "*", "uevent"))
	if err != nil {
		return "", err
	}
	for _, f := range files {
		ev, err := readUevent(f)
		if err != nil {
			continue // the device went away meanwhile
		}
		if ev["DEVTYPE"] == "partition" && ev["PARTNAME"] == name && ev["DEVNAME"] != "" {
			return filepath.Join(devDir, ev["DEVNAME"]), nil
		}
	}
	return "", nil
}

func readUevent(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ev := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			ev[k] = v
		}
	}
	return ev, sc.Err()
}
