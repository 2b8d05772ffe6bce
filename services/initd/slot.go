package initd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
)

// loaderDevicePartUUID is set by systemd-stub to the GPT unique GUID of the
// partition the UKI was loaded from: the ground truth for which slot runs.
const loaderDevicePartUUID = "/sys/firmware/efi/efivars/LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// BootSlot returns "A" or "B": the slot this kernel was booted from. A
// pqbranch.slot= kernel argument wins, for boots that bypass the firmware.
func BootSlot() (string, error) {
	if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, arg := range strings.Fields(string(cmdline)) {
			if v, ok := strings.CutPrefix(arg, "pqbranch.slot="); ok {
				return strings.ToUpper(v), nil
			}
		}
	}
	raw, err := os.ReadFile(loaderDevicePartUUID)
	if err != nil {
		return "", fmt.Errorf("boot partition unknown: %w", err)
	}
	uuid, err := decodeEFIString(raw)
	if err != nil {
		return "", err
	}
	disks, _ := filepath.Glob("/sys/block/*")
	for _, d := range disks {
		name, err := partitionName("/dev/"+filepath.Base(d), uuid)
		if err == nil && name != "" {
			if slot := layout.SlotName(name); slot != "" {
				return slot, nil
			}
			return "", fmt.Errorf("booted from partition %q, which is not a slot", name)
		}
	}
	return "", fmt.Errorf("no disk has the boot partition %s", uuid)
}

// decodeEFIString decodes an efivarfs file holding a UTF-16LE string: four
// bytes of attributes, then the NUL-terminated string.
func decodeEFIString(raw []byte) (string, error) {
	if len(raw) < 4 || len(raw)%2 != 0 {
		return "", errors.New("efivar: malformed string variable")
	}
	u := make([]uint16, 0, (len(raw)-4)/2)
	for i := 4; i+1 < len(raw); i += 2 {
		c := binary.LittleEndian.Uint16(raw[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

// partitionName returns the GPT name of the partition with the given unique
// GUID on disk dev, or "" when the disk has no such partition.
func partitionName(dev, guid string) (string, error) {
	d, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return "", err
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return "", err
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		return "", nil
	}
	for _, p := range table.Partitions {
		if bytes.EqualFold([]byte(p.GUID), []byte(guid)) {
			return p.Name, nil
		}
	}
	return "", nil
}
