// Package datafs creates and fills the data partition's file system. It is
// shared by the appliance, which creates the file system on first boot, and
// by flashing, which creates it ahead of time to put a site's config there,
// so both make exactly the same file system.
package datafs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
)

// Create writes a new ext4 file system over size bytes of f from start.
//
// Why ext4, made by go-diskfs: it journals, so a branch box losing power
// mid-write keeps a consistent file system without fsck (the image has no
// e2fsprogs); the kernel ships it as a module the board already loads; and
// go-diskfs creates it in pure Go. 4 KiB blocks (8 sectors) match flash
// pages; no resize inode, because go-diskfs writes one e2fsck rejects and
// the partition never grows in place.
func Create(f *os.File, start, size int64, label string) error {
	_, err := ext4.Create(file.New(f, false), size, start, 512, &ext4.Params{
		VolumeName:      label,
		SectorsPerBlock: 8,
		Features:        []ext4.FeatureOpt{ext4.WithFeatureReservedGDTBlocksForExpansion(false)},
	})
	if err != nil {
		return err
	}
	// The first mount must find the whole file system on the medium even
	// if power fails right after.
	return f.Sync()
}

// Region is where the data partition lies on a disk.
type Region struct {
	Start, Size int64 // bytes
}

// FindData locates the pqb-data partition in the GPT of the disk (image
// file or block device) at diskPath.
func FindData(diskPath string) (Region, error) {
	d, err := diskfs.Open(diskPath, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return Region{}, fmt.Errorf("datafs: open %s: %w", diskPath, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return Region{}, fmt.Errorf("datafs: %s: partition table: %w", diskPath, err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		return Region{}, fmt.Errorf("datafs: %s: expected a GPT disk", diskPath)
	}
	for _, p := range table.Partitions {
		if p.Name == layout.Data {
			sector := int64(table.LogicalSectorSize)
			if sector == 0 {
				sector = 512
			}
			return Region{Start: int64(p.Start) * sector, Size: int64(p.End-p.Start+1) * sector}, nil
		}
	}
	return Region{}, fmt.Errorf("datafs: %s: no %q partition", diskPath, layout.Data)
}

// probeBytes of zeros make a partition count as never used: every common
// file system signature lies in its first 64 KiB.
const probeBytes = 1 << 20

// Provision creates the data file system on the disk at diskPath, whose
// data partition must be blank (as a freshly written image leaves it), and
// writes name into it with perm. Nothing outside the data partition is
// touched.
func Provision(diskPath, name string, data []byte, perm os.FileMode) error {
	r, err := FindData(diskPath)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(diskPath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("datafs: %w", err)
	}
	defer f.Close()
	head := make([]byte, min(probeBytes, r.Size))
	if _, err := f.ReadAt(head, r.Start); err != nil {
		return fmt.Errorf("datafs: read %s: %w", diskPath, err)
	}
	if len(bytes.Trim(head, "\x00")) != 0 {
		return fmt.Errorf("datafs: the %s partition of %s is not blank; not formatting it", layout.Data, diskPath)
	}
	if err := Create(f, r.Start, r.Size, layout.Data); err != nil {
		return fmt.Errorf("datafs: create ext4 on %s: %w", diskPath, err)
	}
	fs, err := ext4.Read(file.New(f, false), r.Size, r.Start, 512)
	if err != nil {
		return fmt.Errorf("datafs: read back the new file system: %w", err)
	}
	p := path.Join("/", name)
	w, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("datafs: create %s: %w", p, err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("datafs: write %s: %w", p, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("datafs: write %s: %w", p, err)
	}
	// Chmod wants an io/fs path: no leading slash.
	if err := fs.Chmod(p[1:], perm); err != nil {
		return fmt.Errorf("datafs: chmod %s: %w", p, err)
	}
	return f.Sync()
}

// ReadFile reads name from the data file system of the disk at diskPath.
func ReadFile(diskPath, name string) ([]byte, error) {
	r, err := FindData(diskPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(diskPath)
	if err != nil {
		return nil, fmt.Errorf("datafs: %w", err)
	}
	defer f.Close()
	fs, err := ext4.Read(file.New(f, true), r.Size, r.Start, 512)
	if err != nil {
		return nil, fmt.Errorf("datafs: %s: %w", diskPath, err)
	}
	rd, err := fs.OpenFile(path.Join("/", name), os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("datafs: %s: %w", name, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
