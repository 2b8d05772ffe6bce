package efiboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

// ErrPowerCut is what MemVars returns for writes after a simulated power
// cut (PowerCutAfter).
var ErrPowerCut = errors.New("efiboot: simulated power cut")

// Op is the kind of a write to a variable store.
type Op uint8

const (
	OpSet Op = iota + 1
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Write is one write MemVars performed.
type Write struct {
	Op   Op
	Name string // "BootOrder", "Boot0001"
}

func (w Write) String() string { return w.Op.String() + " " + w.Name }

type memVar struct {
	attrs uint32
	data  []byte
}

// MemVars is an in-memory variable store: the double of EFIVarFS. Besides
// Vars it logs every write (tests count the NVRAM writes an operation
// costs), cuts the power after a given number of writes, drops variables
// the way some firmware deletes Boot#### entries it cannot resolve, and
// boots like firmware does (BootNext, then BootOrder).
type MemVars struct {
	mu        sync.Mutex
	vars      map[string]memVar // key: name + "-" + lower-case GUID
	writes    []Write
	powerLeft int // writes left before the cut; < 0: no cut
}

var _ Vars = (*MemVars)(nil)

// NewMemVars returns an empty store, like the NVRAM of a new machine.
func NewMemVars() *MemVars { return &MemVars{vars: map[string]memVar{}, powerLeft: -1} }

func memKey(name, guid string) string { return name + "-" + strings.ToLower(guid) }

func (m *MemVars) Get(name, guid string) (uint32, []byte, error) {
	if err := checkVarName(name, guid); err != nil {
		return 0, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vars[memKey(name, guid)]
	if !ok {
		return 0, nil, fmt.Errorf("efiboot: variable %s: %w", name, os.ErrNotExist)
	}
	return v.attrs, bytes.Clone(v.data), nil
}

// Set follows SetVariable: a rewrite must keep the attributes.
func (m *MemVars) Set(name, guid string, attrs uint32, data []byte) error {
	if err := checkVarName(name, guid); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.spend(); err != nil {
		return err
	}
	k := memKey(name, guid)
	if old, ok := m.vars[k]; ok && old.attrs != attrs {
		return fmt.Errorf("efiboot: variable %s: rewrite with attributes %#x; it has %#x (SetVariable: EFI_INVALID_PARAMETER)", name, attrs, old.attrs)
	}
	m.vars[k] = memVar{attrs: attrs, data: bytes.Clone(data)}
	m.writes = append(m.writes, Write{OpSet, name})
	return nil
}

func (m *MemVars) Delete(name, guid string) error {
	if err := checkVarName(name, guid); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey(name, guid)
	if _, ok := m.vars[k]; !ok {
		return fmt.Errorf("efiboot: delete variable %s: %w", name, os.ErrNotExist)
	}
	if err := m.spend(); err != nil {
		return err
	}
	delete(m.vars, k)
	m.writes = append(m.writes, Write{OpDelete, name})
	return nil
}

func (m *MemVars) Names() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.vars))
	for k := range m.vars {
		names = append(names, k)
	}
	slices.Sort(names)
	return names, nil
}

// spend accounts one write against a pending power cut.
func (m *MemVars) spend() error {
	if m.powerLeft == 0 {
		return ErrPowerCut
	}
	if m.powerLeft > 0 {
		m.powerLeft--
	}
	return nil
}

// Writes returns the writes so far, oldest first.
func (m *MemVars) Writes() []Write {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.writes)
}

// PowerCutAfter lets n more writes through; every later one fails with
// ErrPowerCut and changes nothing, as if the machine lost power.
func (m *MemVars) PowerCutAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.powerLeft = n
}

// PowerOn ends a simulated power cut.
func (m *MemVars) PowerOn() { m.PowerCutAfter(-1) }

// Drop deletes a variable behind the OS's back, as firmware does with
// Boot#### entries it cannot resolve (RAUC's users see this after a power
// cut during an install). It is not logged as a write.
func (m *MemVars) Drop(name, guid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.vars, memKey(name, guid))
}

// Clone copies the variables (not the write log or a pending power cut).
func (m *MemVars) Clone() *MemVars {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMemVars()
	for k, v := range m.vars {
		c.vars[k] = memVar{attrs: v.attrs, data: bytes.Clone(v.data)}
	}
	return c
}

// Boot simulates the firmware's boot manager: it consumes BootNext, then
// walks BootOrder, and boots the first entry that exists, is active and
// that bootable accepts (bootable models the disks: does the device path
// resolve to a loadable image). It sets BootCurrent and returns the entry
// number, or ok=false when nothing in BootOrder boots (real firmware then
// tries removable media). Firmware writes are not logged.
func (m *MemVars) Boot(bootable func(n uint16, opt LoadOption) bool) (n uint16, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	try := func(n uint16) bool {
		v, ok := m.vars[memKey(bootEntryName(n), GlobalGUID)]
		if !ok {
			return false
		}
		opt, err := ParseLoadOption(v.data)
		return err == nil && opt.Attributes&LoadOptionActive != 0 && bootable(n, opt)
	}
	boot := func(n uint16) (uint16, bool) {
		m.vars[memKey("BootCurrent", GlobalGUID)] = memVar{attrs: AttrBootserviceAccess | AttrRuntimeAccess, data: binary.LittleEndian.AppendUint16(nil, n)}
		return n, true
	}
	if v, ok := m.vars[memKey("BootNext", GlobalGUID)]; ok {
		delete(m.vars, memKey("BootNext", GlobalGUID))
		if len(v.data) == 2 && try(binary.LittleEndian.Uint16(v.data)) {
			return boot(binary.LittleEndian.Uint16(v.data))
		}
	}
	if v, ok := m.vars[memKey("BootOrder", GlobalGUID)]; ok {
		for i := 0; i+1 < len(v.data); i += 2 {
			if n := binary.LittleEndian.Uint16(v.data[i:]); try(n) {
				return boot(n)
			}
		}
	}
	delete(m.vars, memKey("BootCurrent", GlobalGUID))
	return 0, false
}
