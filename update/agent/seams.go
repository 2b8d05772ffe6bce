package agent

import (
	"fmt"

	"github.com/pqbranch/pqbranch/update/slots"
)

// BootControl is the part of *efiboot.Manager the agent drives. Tests use
// an in-memory double that records every call.
type BootControl interface {
	// Ensure creates or repairs one Boot#### entry per slot.
	Ensure() (map[string]uint16, error)
	// SetNext arms a one-time boot of slot (BootNext).
	SetNext(slot string) error
	// ClearNext disarms it.
	ClearNext() error
	// Commit makes slot the default (first in BootOrder).
	Commit(slot string) error
}

// SlotIO opens a slot partition. The agent only ever opens the slot it is
// not running from.
type SlotIO interface {
	OpenSlot(slot string) (Device, error)
}

// Device is an open slot partition: *slots.Slot, or a test double.
type Device = slots.Device

// DiskSlots opens the slot partitions of the boot disk found by update/slots.
type DiskSlots struct{ Disk *slots.Disk }

// OpenSlot opens slot's partition for reading and writing.
func (d DiskSlots) OpenSlot(slot string) (Device, error) {
	p, ok := d.Disk.Slots[slot]
	if !ok {
		return nil, fmt.Errorf("agent: slot %q: no partition on %s", slot, d.Disk.Dev)
	}
	return slots.Open(p)
}
