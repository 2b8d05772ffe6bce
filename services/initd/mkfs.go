package initd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pqbranch/pqbranch/images/datafs"
)

// probeBytes is how much of a partition must be zero for it to count as
// never used. Every common file system and partition-table signature lies in
// the first 64 KiB; a megabyte leaves a wide margin and reads in no time.
const probeBytes = 1 << 20

// ext4 superblock: 1024 bytes in, magic 0xEF53 at offset 56.
const (
	superblockOffset = 1024
	ext4MagicOffset  = superblockOffset + 56
	ext4Magic        = 0xEF53
)

// ensureExt4 makes sure dev holds an ext4 file system. It creates one only
// when the start of dev is all zeros, as the image build leaves the data
// partition, and reports whether it did. Anything else that is not ext4 is
// refused rather than wiped.
// (Why ext4, and how it is made: see package datafs.)
func ensureExt4(dev, label string) (created bool, err error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	head := make([]byte, probeBytes)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("data: read %s: %w", dev, err)
	}
	head = head[:n]
	if len(head) > ext4MagicOffset+2 && binary.LittleEndian.Uint16(head[ext4MagicOffset:]) == ext4Magic {
		return false, nil
	}
	if len(bytes.Trim(head, "\x00")) != 0 {
		return false, fmt.Errorf("data: %s holds data that is not an ext4 file system; not formatting it", dev)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false, fmt.Errorf("data: size of %s: %w", dev, err)
	}
	if err := mkfsExt4(f, size, label); err != nil {
		return false, fmt.Errorf("data: create ext4 on %s: %w", dev, err)
	}
	return true, nil
}

// mkfsExt4 writes a new ext4 file system over the whole of f, the same one
// flashing with a site config creates (package datafs).
func mkfsExt4(f *os.File, size int64, label string) error {
	return datafs.Create(f, 0, size, label)
}
