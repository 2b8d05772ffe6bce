package slots

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Device is what the update agent writes a slot image into and reads it
// back from. *Slot implements it for a partition and for a plain file.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Size() int64
	Close() error
}

// ErrBeyondEnd is returned for a write that would run past the slot.
var ErrBeyondEnd = errors.New("write beyond the end of the slot")

// Slot is an open slot partition (or a file standing in for one).
type Slot struct {
	f    *os.File
	size int64
}

var _ Device = (*Slot)(nil)

// Open opens a slot's partition for reading and writing. The device must
// be exactly the partition's size: anything else means DEVNAME names
// another device than the GPT entry, and writing it could hit the running
// slot. A block device is opened O_EXCL, which the kernel refuses while
// it is mounted.
func Open(p Partition) (*Slot, error) {
	st, err := os.Stat(p.Dev)
	if err != nil {
		return nil, fmt.Errorf("slots: open %s (%s): %w", p.Dev, p.Name, err)
	}
	flags := os.O_RDWR
	if st.Mode()&os.ModeDevice != 0 {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(p.Dev, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("slots: open %s (%s): %w", p.Dev, p.Name, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("slots: %s: size: %w", p.Dev, err)
	}
	if size != p.Size {
		f.Close()
		return nil, fmt.Errorf("slots: %s is %d bytes; the GPT entry of %s is %d bytes", p.Dev, size, p.Name, p.Size)
	}
	return &Slot{f: f, size: size}, nil
}

// CreateFile makes a plain file of exactly size bytes to stand in for a
// slot (tests, and the build's tools), keeping what a shorter or equal
// file holds.
func CreateFile(path string, size int64) (*Slot, error) {
	if size <= 0 {
		return nil, fmt.Errorf("slots: %s: size %d; expected > 0", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("slots: %s: %w", path, err)
	}
	return &Slot{f: f, size: size}, nil
}

// ReadAt reads like io.ReaderAt; reads stop at the end of the slot.
func (s *Slot) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("slots: %s: read at offset %d", s.f.Name(), off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	if rest := s.size - off; int64(len(p)) > rest {
		n, err := s.f.ReadAt(p[:rest], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return s.f.ReadAt(p, off)
}

// WriteAt refuses, whole, a write that does not fit in the slot.
func (s *Slot) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > s.size || int64(len(p)) > s.size-off {
		return 0, fmt.Errorf("slots: %s: %d bytes at offset %d of %d: %w", s.f.Name(), len(p), off, s.size, ErrBeyondEnd)
	}
	return s.f.WriteAt(p, off)
}

// Sync makes the written data durable (fdatasync: the metadata of a block
// device does not matter).
func (s *Slot) Sync() error {
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		return fmt.Errorf("slots: %s: fdatasync: %w", s.f.Name(), err)
	}
	return nil
}

// Size is the slot's size in bytes.
func (s *Slot) Size() int64 { return s.size }

func (s *Slot) Close() error { return s.f.Close() }
