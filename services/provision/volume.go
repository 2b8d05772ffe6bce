package provision

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// volume is a FAT file system on a removable device.
type volume struct {
	where string // "whole device" or "partition N"
	fat   *fatVolume
	label string // as blkid reports it: the root directory's label entry, else the boot sector's
	// root is the root directory, read once for the label and kept for
	// readConfig.
	root []dirEntry
}

// readVolumes finds the FAT volumes on a device of size bytes: the whole
// device when it is one (a "superfloppy"), else each partition of its MBR
// or GPT. Anything else on the device is not looked at.
func readVolumes(r io.ReaderAt, size int64) []volume {
	if v, err := newVolume(r, 0, size, "whole device"); err == nil {
		return []volume{v}
	}
	var vols []volume
	for _, p := range partitions(r, size) {
		if v, err := newVolume(r, p.start, p.size, fmt.Sprintf("partition %d", p.index)); err == nil {
			vols = append(vols, v)
		}
	}
	return vols
}

func newVolume(r io.ReaderAt, start, size int64, where string) (volume, error) {
	f, err := openFAT(r, start, size)
	if err != nil {
		return volume{}, err
	}
	root, label, err := f.root()
	if err != nil {
		return volume{}, err
	}
	if label == "" {
		label = f.bootLabel
	}
	return volume{where: where, fat: f, label: label, root: root}, nil
}

// isStick reports whether the volume carries the provisioning label. FAT
// labels are upper case by convention; a lower-case one written by Linux
// tools counts too.
func (v volume) isStick() bool { return strings.EqualFold(v.label, Label) }

// readConfig returns the bytes of /pqbranch.json (any case) in the root
// directory, refusing a directory or a file over MaxConfigSize.
func (v volume) readConfig() ([]byte, error) {
	for _, e := range v.root {
		if !strings.EqualFold(e.name, FileName) {
			continue
		}
		switch {
		case e.dir:
			return nil, fmt.Errorf("%s is a directory, expected a file", FileName)
		case e.size > MaxConfigSize:
			return nil, fmt.Errorf("%s is %d bytes, expected at most %d", FileName, e.size, MaxConfigSize)
		case e.size == 0:
			return []byte{}, nil
		}
		b, err := v.fat.readChain(e.cluster, e.size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", FileName, err)
		}
		if int64(len(b)) != e.size {
			return nil, fmt.Errorf("%s: its clusters hold %d bytes, its directory entry says %d", FileName, len(b), e.size)
		}
		return b, nil
	}
	return nil, fmt.Errorf("no %s in the root directory", FileName)
}

// part is a partition: its number and where it lies, in bytes.
type part struct {
	index       int
	start, size int64
}

// partitions returns the partitions of an MBR or GPT with 512-byte
// sectors (what USB sticks present) that lie inside the device. A
// protective MBR leads to the GPT. Nothing is trusted: entries outside the
// device are dropped, and at most 128 GPT entries are read.
func partitions(r io.ReaderAt, size int64) []part {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil || mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil
	}
	var parts []part
	for i := range 4 {
		e := mbr[446+16*i : 446+16*(i+1)]
		typ := e[4]
		if typ == 0xee {
			return gptPartitions(r, size)
		}
		start := int64(binary.LittleEndian.Uint32(e[8:])) * 512
		n := int64(binary.LittleEndian.Uint32(e[12:])) * 512
		if typ == 0 || n == 0 || start == 0 || start+n > size {
			continue
		}
		parts = append(parts, part{index: i + 1, start: start, size: n})
	}
	return parts
}

func gptPartitions(r io.ReaderAt, size int64) []part {
	h := make([]byte, 92)
	if _, err := r.ReadAt(h, 512); err != nil || !bytes.Equal(h[:8], []byte("EFI PART")) {
		return nil
	}
	at := int64(binary.LittleEndian.Uint64(h[0x48:]))
	count := int64(binary.LittleEndian.Uint32(h[0x50:]))
	esize := int64(binary.LittleEndian.Uint32(h[0x54:]))
	if esize < 128 || esize > 4096 || at < 2 || at > size/512 {
		return nil
	}
	count = min(count, 128)
	table := make([]byte, count*esize)
	if _, err := r.ReadAt(table, at*512); err != nil {
		return nil
	}
	var parts []part
	for i := range count {
		e := table[i*esize : (i+1)*esize]
		if bytes.Equal(e[:16], make([]byte, 16)) { // unused entry
			continue
		}
		first := binary.LittleEndian.Uint64(e[0x20:])
		last := binary.LittleEndian.Uint64(e[0x28:])
		if first == 0 || last < first || last >= uint64(size/512) {
			continue
		}
		parts = append(parts, part{index: int(i) + 1, start: int64(first) * 512, size: int64(last-first+1) * 512})
	}
	return parts
}
