// Package layout names the partitions of a pqbranch disk. It is shared by the
// image build and by the appliance, which finds its slots and data partition
// by these names, never by device numbers.
package layout

import "strings"

// GPT partition names.
const (
	SlotA = "pqb-slot-a"
	SlotB = "pqb-slot-b"
	Data  = "pqb-data"
)

// Paths inside a slot's FAT file system.
const (
	// UKIPath is where every slot keeps its unified kernel image; the
	// Boot#### entries that steer A/B point here.
	UKIPath = "/EFI/pqbranch/pqbranch.efi"
	// RemovablePath is the UEFI removable-media path that firmware with an
	// empty NVRAM boots. Only slot A carries it, so a freshly flashed disk
	// always boots A.
	RemovablePath = "/EFI/BOOT/BOOTX64.EFI"
)

// SlotName maps a GPT partition name to its slot letter ("A" or "B"), or ""
// when the partition is not a slot.
func SlotName(partName string) string {
	switch strings.ToLower(partName) {
	case SlotA:
		return "A"
	case SlotB:
		return "B"
	}
	return ""
}
