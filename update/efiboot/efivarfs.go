package efiboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL, the inode flag of chattr +i.
const fsImmutableFL = 0x00000010

// efiVarFS is the Vars of a mounted efivarfs.
type efiVarFS struct{ dir string }

// EFIVarFS returns the variable store mounted at dir
// (/sys/firmware/efi/efivars). The kernel creates most variable files
// immutable so that a stray rm cannot brick a machine; writes and deletes
// clear the flag first, and a rewrite puts it back.
//
// On any other file system (tests) the same code works on plain files:
// where the inode flags are unsupported they are skipped.
func EFIVarFS(dir string) Vars { return efiVarFS{dir: dir} }

func (v efiVarFS) path(name, guid string) (string, error) {
	if err := checkVarName(name, guid); err != nil {
		return "", err
	}
	return filepath.Join(v.dir, name+"-"+strings.ToLower(guid)), nil
}

func (v efiVarFS) Get(name, guid string) (uint32, []byte, error) {
	p, err := v.path(name, guid)
	if err != nil {
		return 0, nil, err
	}
	// efivarfs wants the whole variable in one read: ReadFile does that
	// for the small sizes variables have.
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, nil, fmt.Errorf("efiboot: read %s: %w", p, err)
	}
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("efiboot: %s: %d bytes; expected 4 bytes of attributes and the data", p, len(b))
	}
	return binary.LittleEndian.Uint32(b), b[4:], nil
}

func (v efiVarFS) Set(name, guid string, attrs uint32, data []byte) error {
	p, err := v.path(name, guid)
	if err != nil {
		return err
	}
	restore, err := makeMutable(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// No O_TRUNC: efivarfs replaces the variable with what one write()
	// carries, and it does not implement truncation.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("efiboot: write %s: %w", p, err)
	}
	buf := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(data)), attrs)
	buf = append(buf, data...)
	n, err := unix.Write(int(f.Fd()), buf) // exactly one write(2): efivarfs needs attributes and data together
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if err == nil {
		err = truncateUnlessEFIVarFS(f, int64(len(buf)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("efiboot: write %s: %w", p, err)
	}
	if restore != nil {
		return restore()
	}
	return nil
}

func (v efiVarFS) Delete(name, guid string) error {
	p, err := v.path(name, guid)
	if err != nil {
		return err
	}
	if _, err := makeMutable(p); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("efiboot: delete %s: %w", p, err)
	}
	return nil
}

func (v efiVarFS) Names() ([]string, error) {
	ents, err := os.ReadDir(v.dir)
	if err != nil {
		return nil, fmt.Errorf("efiboot: list %s: %w", v.dir, err)
	}
	var names []string
	for _, e := range ents {
		if _, _, ok := splitVarName(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// makeMutable clears the immutable flag of file p and returns a function
// that sets it again, or nil when the flag was not set or the file system
// has no inode flags. A missing file is an error wrapping os.ErrNotExist.
func makeMutable(p string) (restore func() error, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("efiboot: %s: %w", p, err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if flagsUnsupported(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("efiboot: %s: FS_IOC_GETFLAGS: %w", p, err)
	}
	if flags&fsImmutableFL == 0 {
		return nil, nil
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags&^fsImmutableFL); err != nil {
		return nil, fmt.Errorf("efiboot: %s: clear the immutable flag: %w", p, err)
	}
	return func() error { return setFlags(p, flags) }, nil
}

func setFlags(p string, flags int) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("efiboot: %s: %w", p, err)
	}
	defer f.Close()
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags); err != nil {
		return fmt.Errorf("efiboot: %s: restore the immutable flag: %w", p, err)
	}
	return nil
}

// flagsUnsupported reports the errors of a file system without inode
// flags (ramfs, some FUSE): there is no immutable flag to clear.
func flagsUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL)
}

// truncateUnlessEFIVarFS cuts a plain file to the bytes just written; on
// efivarfs the write already replaced the variable.
func truncateUnlessEFIVarFS(f *os.File, n int64) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("fstatfs: %w", err)
	}
	if uint32(st.Type) == uint32(unix.EFIVARFS_MAGIC) {
		return nil
	}
	return f.Truncate(n)
}
