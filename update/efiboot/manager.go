package efiboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pqbranch/pqbranch/images/layout"
)

// UKIPath is the File Path of every pqbranch Boot#### entry: the slot's
// unified kernel image, in UEFI's backslash form.
var UKIPath = strings.ReplaceAll(layout.UKIPath, "/", `\`)

// SlotPartition is one slot's partition as the Hard Drive node names it.
type SlotPartition struct {
	Slot       string // "A" | "B"
	PartNumber uint32 // GPT entry number, from 1
	PartGUID   string // the partition's unique GUID
	StartLBA   uint64
	SizeLBA    uint64
}

// Manager keeps one Boot#### entry per slot and steers BootOrder and
// BootNext, the way RAUC's EFI backend does.
//
// Our entries are found by the partition GUID in their Hard Drive node,
// never by description: a user may rename them, and firmware may add
// entries of its own with any name. An entry whose path is
// HD(...)/File(\EFI\pqbranch\pqbranch.efi) but whose GUID is no slot of
// this disk (the disk was flashed again: partition GUIDs derive from the
// version) is stale and is rewritten for a slot that lacks an entry.
// Everything else is foreign and kept, in its order.
//
// # Write order
//
// A power cut between any two writes must leave a machine that boots the
// committed slot (or, in Commit, the newly committed one). Each variable
// write is atomic in the firmware, so the order of writes is what matters:
//
//  1. Entries that cannot change what boots: new entries at numbers
//     nothing references yet, rewrites of an entry for the slot it already
//     points at, and the committed slot's entry.
//  2. BootOrder, in one write, committed slot first.
//  3. Last, a stale entry that BootOrder lists ahead of the committed
//     slot and that is reused for the other slot: rewritten before step 2,
//     it would put the uncommitted slot first.
//
// BootNext is written after the entry it names exists. A write that would
// store what is there already is skipped, to spare the NVRAM's flash.
type Manager struct {
	Vars  Vars
	Slots []SlotPartition
	// Description names a slot's entry in the firmware's boot menu;
	// nil gives "pqbranch slot A".
	Description func(slot string) string
	// Booted is the slot the running system was loaded from (initd learns
	// it from LoaderDevicePartUUID). Ensure puts it first in BootOrder when
	// BootOrder lists neither slot: the first boot of a freshly flashed
	// disk, which the firmware starts through the removable-media path.
	// Empty: BootCurrent decides, and when that is none of ours Ensure
	// fails rather than guess which slot holds good software.
	Booted string
}

// entryState is what Ensure must do about one slot's entry.
type entryState uint8

const (
	entryOK      entryState = iota + 1 // exists and is right
	entryWrong                         // points at the slot, but some field is off: rewrite
	entryStale                         // ours, for a partition GUID not on this disk: reuse
	entryMissing                       // none: create at a free number
)

func (s entryState) String() string {
	switch s {
	case entryOK:
		return "ok"
	case entryWrong:
		return "wrong"
	case entryStale:
		return "stale"
	case entryMissing:
		return "missing"
	}
	return fmt.Sprintf("entryState(%d)", uint8(s))
}

// bootEntry is one Boot#### variable as read.
type bootEntry struct {
	num     uint16
	attrs   uint32
	opt     LoadOption
	decoded bool // false: not a valid EFI_LOAD_OPTION; foreign, never touched
}

// nvram is the boot state read from the store.
type nvram struct {
	entries map[uint16]bootEntry
	order   []uint16
	next    []byte // BootNext's data, nil when unset
}

// pick is the entry chosen for one slot.
type pick struct {
	num   uint16
	state entryState
}

func (m *Manager) description(slot string) string {
	if m.Description != nil {
		return m.Description(slot)
	}
	return "pqbranch slot " + slot
}

func (m *Manager) check() error {
	if m.Vars == nil {
		return errors.New("efiboot: Manager.Vars is nil")
	}
	if len(m.Slots) != 2 {
		return fmt.Errorf("efiboot: Manager.Slots has %d slots; expected 2", len(m.Slots))
	}
	a, b := m.Slots[0], m.Slots[1]
	if a.Slot == "" || b.Slot == "" || a.Slot == b.Slot {
		return fmt.Errorf("efiboot: Manager.Slots: slot names %q and %q; expected two distinct names", a.Slot, b.Slot)
	}
	ga, err := ParseGUID(a.PartGUID)
	if err != nil {
		return fmt.Errorf("efiboot: slot %s: PartGUID: %w", a.Slot, err)
	}
	gb, err := ParseGUID(b.PartGUID)
	if err != nil {
		return fmt.Errorf("efiboot: slot %s: PartGUID: %w", b.Slot, err)
	}
	if ga == gb {
		return fmt.Errorf("efiboot: slots %s and %s share the partition GUID %s", a.Slot, b.Slot, a.PartGUID)
	}
	return nil
}

func (m *Manager) slot(name string) (SlotPartition, error) {
	for _, s := range m.Slots {
		if s.Slot == name {
			return s, nil
		}
	}
	return SlotPartition{}, fmt.Errorf("efiboot: no slot %q; expected %q or %q", name, m.Slots[0].Slot, m.Slots[1].Slot)
}

func (m *Manager) other(name string) string {
	if m.Slots[0].Slot == name {
		return m.Slots[1].Slot
	}
	return m.Slots[0].Slot
}

// want is the load option of a slot's entry.
func (m *Manager) want(s SlotPartition) (LoadOption, error) {
	hd, err := GPTHardDrive(s.PartNumber, s.StartLBA, s.SizeLBA, s.PartGUID)
	if err != nil {
		return LoadOption{}, fmt.Errorf("efiboot: slot %s: %w", s.Slot, err)
	}
	return LoadOption{
		Attributes:  LoadOptionActive,
		Description: m.description(s.Slot),
		FilePaths:   []DevicePath{{hd.Node(), FilePathNode(UKIPath)}},
	}, nil
}

// ukiTarget returns the Hard Drive node of an entry shaped like ours:
// HD(GPT partition)/File(\EFI\pqbranch\pqbranch.efi).
func ukiTarget(e bootEntry) (HardDrive, bool) {
	if !e.decoded || len(e.opt.FilePaths) == 0 || len(e.opt.FilePaths[0]) != 2 {
		return HardDrive{}, false
	}
	hd, ok := e.opt.FilePaths[0][0].AsHardDrive()
	if !ok || hd.GUID() == "" {
		return HardDrive{}, false
	}
	path, ok := e.opt.FilePaths[0][1].AsFilePath()
	if !ok || !strings.EqualFold(path, UKIPath) { // FAT: case-insensitive
		return HardDrive{}, false
	}
	return hd, true
}

// slotOf returns the slot an entry shaped like ours points at, "" if none.
func (m *Manager) slotOf(e bootEntry) string {
	hd, ok := ukiTarget(e)
	if !ok {
		return ""
	}
	return m.slotByGUID(hd.Signature)
}

func (m *Manager) slotByGUID(g [16]byte) string {
	for _, s := range m.Slots {
		if sg, err := ParseGUID(s.PartGUID); err == nil && sg == g {
			return s.Slot
		}
	}
	return ""
}

// load checks the Manager, then reads the boot state: every reader of
// NVRAM starts with both.
func (m *Manager) load() (*nvram, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	nv := &nvram{entries: map[uint16]bootEntry{}}
	names, err := m.Vars.Names()
	if err != nil {
		return nil, err
	}
	for _, full := range names {
		name, guid, ok := splitVarName(full)
		if !ok || guid != GlobalGUID {
			continue
		}
		num, ok := parseBootEntryName(name)
		if !ok {
			continue
		}
		attrs, data, err := m.Vars.Get(name, guid)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		e := bootEntry{num: num, attrs: attrs}
		if opt, err := ParseLoadOption(data); err == nil {
			e.opt, e.decoded = opt, true
		}
		nv.entries[num] = e
	}
	_, order, err := m.Vars.Get("BootOrder", GlobalGUID)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	case len(order)%2 != 0:
		return nil, fmt.Errorf("efiboot: BootOrder: %d bytes; expected a whole number of 2-byte entries", len(order))
	default:
		nv.order = decodeOrder(order)
	}
	_, next, err := m.Vars.Get("BootNext", GlobalGUID)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		nv.next = next
	}
	return nv, nil
}

func decodeOrder(b []byte) []uint16 {
	o := make([]uint16, len(b)/2)
	for i := range o {
		o[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return o
}

func encodeOrder(o []uint16) []byte {
	b := make([]byte, 0, 2*len(o))
	for _, n := range o {
		b = binary.LittleEndian.AppendUint16(b, n)
	}
	return b
}

// position is n's index in BootOrder, or -1.
func (nv *nvram) position(n uint16) int { return slices.Index(nv.order, n) }

// byPreference sorts entry numbers: those in BootOrder first, in its
// order, then the rest by number.
func (nv *nvram) byPreference(nums []uint16) {
	rank := func(n uint16) int {
		if p := nv.position(n); p >= 0 {
			return p
		}
		return len(nv.order) + int(n)
	}
	slices.SortFunc(nums, func(a, b uint16) int { return rank(a) - rank(b) })
}

// matches reports whether e is exactly the entry want describes. Optional
// data is ignored: some firmware appends its own, and rewriting it away on
// every boot would wear the flash.
func matches(e bootEntry, want LoadOption) bool {
	if !e.decoded || e.attrs != AttrsBoot || e.opt.Attributes != want.Attributes || e.opt.Description != want.Description || len(e.opt.FilePaths) != 1 {
		return false
	}
	got, ok := ukiTarget(e)
	wantHD, _ := want.FilePaths[0][0].AsHardDrive()
	return ok && got == wantHD
}

// plan chooses an entry for each slot; first is the committed slot.
func (m *Manager) plan(nv *nvram, first string) (map[string]pick, map[string]LoadOption, error) {
	picks := map[string]pick{}
	wants := map[string]LoadOption{}
	nums := make([]uint16, 0, len(nv.entries))
	for n := range nv.entries {
		nums = append(nums, n)
	}
	nv.byPreference(nums)
	for _, s := range m.Slots {
		want, err := m.want(s)
		if err != nil {
			return nil, nil, err
		}
		wants[s.Slot] = want
		for _, n := range nums { // an exact entry wins over one to repair
			if matches(nv.entries[n], want) {
				picks[s.Slot] = pick{n, entryOK}
				break
			}
		}
		if _, ok := picks[s.Slot]; ok {
			continue
		}
		for _, n := range nums {
			// A rewrite must keep the attributes (SetVariable refuses
			// others); an entry with odd ones is left alone.
			if e := nv.entries[n]; e.attrs == AttrsBoot && m.slotOf(e) == s.Slot {
				picks[s.Slot] = pick{n, entryWrong}
				break
			}
		}
	}
	// Stale entries go to slots still without one, the one for the same
	// partition number first: a reflashed disk keeps its numbers.
	var stale []uint16
	for _, n := range nums {
		e := nv.entries[n]
		if _, ok := ukiTarget(e); ok && e.attrs == AttrsBoot && m.slotOf(e) == "" {
			stale = append(stale, n)
		}
	}
	for _, s := range m.Slots {
		if _, ok := picks[s.Slot]; ok || len(stale) == 0 {
			continue
		}
		i := slices.IndexFunc(stale, func(n uint16) bool {
			hd, _ := ukiTarget(nv.entries[n])
			return hd.PartNumber == s.PartNumber
		})
		if i < 0 {
			i = 0
		}
		picks[s.Slot] = pick{stale[i], entryStale}
		stale = slices.Delete(stale, i, i+1)
	}
	// New entries take the lowest numbers nothing uses or references: a
	// number a dangling BootOrder or BootNext names would go live where
	// it stands. Firmware that drops an entry may leave its number in
	// BootOrder, though, and taking it back spares a BootOrder write where
	// that is safe: anywhere for the committed slot (it is to boot first
	// anyway), behind the committed slot's entry for the other one.
	used := map[uint16]bool{}
	for n := range nv.entries {
		used[n] = true
	}
	if len(nv.next) == 2 {
		used[binary.LittleEndian.Uint16(nv.next)] = true
	}
	for _, p := range picks {
		used[p.num] = true
	}
	for _, slot := range []string{first, m.other(first)} {
		if _, ok := picks[slot]; ok {
			continue
		}
		from := 0
		if slot != first {
			from = nv.position(picks[first].num) + 1
			if from == 0 {
				from = len(nv.order)
			}
		}
		if i := slices.IndexFunc(nv.order[from:], func(n uint16) bool { return !used[n] }); i >= 0 {
			n := nv.order[from+i]
			used[n] = true
			picks[slot] = pick{n, entryMissing}
			continue
		}
		n, ok := firstFree(used, nv.order)
		if !ok {
			return nil, nil, errors.New("efiboot: all 65536 Boot#### numbers are in use")
		}
		used[n] = true
		picks[slot] = pick{n, entryMissing}
	}
	return picks, wants, nil
}

func firstFree(used map[uint16]bool, order []uint16) (uint16, bool) {
	for n := 0; n <= 0xffff; n++ {
		if !used[uint16(n)] && !slices.Contains(order, uint16(n)) {
			return uint16(n), true
		}
	}
	return 0, false
}

// committed is the slot BootOrder boots first among ours as it stands, or
// "" when it lists neither.
func (m *Manager) committed(nv *nvram) string {
	for _, n := range nv.order {
		if e, ok := nv.entries[n]; ok {
			if s := m.slotOf(e); s != "" {
				return s
			}
		}
	}
	return ""
}

// orderRule says how the new BootOrder is formed.
type orderRule uint8

const (
	orderKeep   orderRule = iota + 1 // Ensure: add what is missing, keep the rest
	orderCommit                      // Commit: slot, other, foreign in their order
)

func (r orderRule) String() string {
	switch r {
	case orderKeep:
		return "keep"
	case orderCommit:
		return "commit"
	}
	return fmt.Sprintf("orderRule(%d)", uint8(r))
}

// apply brings the entries and BootOrder to the state where first is the
// committed slot, in the order the Manager's doc describes.
func (m *Manager) apply(nv *nvram, first string, rule orderRule) (map[string]uint16, error) {
	picks, wants, err := m.plan(nv, first)
	if err != nil {
		return nil, err
	}
	second := m.other(first)
	c, o := picks[first].num, picks[second].num
	pc, po := nv.position(c), nv.position(o)

	order := nv.order
	switch {
	case rule == orderKeep && pc >= 0 && po > pc:
	case rule == orderKeep && pc >= 0 && po < 0:
		order = slices.Insert(slices.Clone(order), pc+1, o)
	default:
		order = []uint16{c, o}
		for _, n := range nv.order {
			if n != c && n != o {
				order = append(order, n)
			}
		}
	}

	// An entry write that could make the other slot boot ahead of the
	// committed one waits until BootOrder is written.
	deferred := picks[second].state == entryStale && po >= 0 && (pc < 0 || po < pc)
	for _, slot := range []string{first, second} {
		if slot == second && deferred {
			continue
		}
		if err := m.writeEntry(picks[slot], wants[slot]); err != nil {
			return nil, err
		}
	}
	if !slices.Equal(order, nv.order) {
		if err := m.Vars.Set("BootOrder", GlobalGUID, AttrsBoot, encodeOrder(order)); err != nil {
			return nil, fmt.Errorf("efiboot: write BootOrder: %w", err)
		}
	}
	if deferred {
		if err := m.writeEntry(picks[second], wants[second]); err != nil {
			return nil, err
		}
	}
	return map[string]uint16{first: c, second: o}, nil
}

func (m *Manager) writeEntry(p pick, want LoadOption) error {
	if p.state == entryOK {
		return nil
	}
	data, err := want.Marshal()
	if err != nil {
		return err
	}
	if err := m.Vars.Set(bootEntryName(p.num), GlobalGUID, AttrsBoot, data); err != nil {
		return fmt.Errorf("efiboot: write %s (%s entry for %q): %w", bootEntryName(p.num), p.state, want.Description, err)
	}
	return nil
}

// Ensure makes sure each slot has a right Boot#### entry and BootOrder
// lists both, the committed slot ahead of the other. The committed slot is
// the first of ours in BootOrder; when BootOrder lists neither, it is
// Booted, or BootCurrent's slot. It returns slot → entry number.
func (m *Manager) Ensure() (map[string]uint16, error) {
	nv, err := m.load()
	if err != nil {
		return nil, err
	}
	first := m.committed(nv)
	if first == "" {
		first, err = m.booted(nv)
		if err != nil {
			return nil, err
		}
	}
	return m.apply(nv, first, orderKeep)
}

// booted is the slot Ensure commits when BootOrder lists neither.
func (m *Manager) booted(nv *nvram) (string, error) {
	if m.Booted != "" {
		_, err := m.slot(m.Booted)
		return m.Booted, err
	}
	s, err := m.current(nv)
	if err != nil {
		return "", fmt.Errorf("efiboot: BootOrder lists no slot and Manager.Booted is empty: %w", err)
	}
	if s == "" {
		return "", errors.New("efiboot: BootOrder lists no slot, Manager.Booted is empty and BootCurrent is no slot's entry; cannot tell which slot is good")
	}
	return s, nil
}

// Current returns the slot of the entry in BootCurrent, "" when the
// firmware booted something else (the removable-media path of a fresh
// disk, or another disk). Any entry whose Hard Drive node names a slot's
// partition counts, whatever file it loads.
func (m *Manager) Current() (string, error) {
	nv, err := m.load()
	if err != nil {
		return "", err
	}
	return m.current(nv)
}

func (m *Manager) current(nv *nvram) (string, error) {
	_, data, err := m.Vars.Get("BootCurrent", GlobalGUID)
	if err != nil {
		return "", fmt.Errorf("efiboot: BootCurrent: %w", err)
	}
	if len(data) != 2 {
		return "", fmt.Errorf("efiboot: BootCurrent: %d bytes; expected 2", len(data))
	}
	e, ok := nv.entries[binary.LittleEndian.Uint16(data)]
	if !ok || !e.decoded {
		return "", nil
	}
	for _, p := range e.opt.FilePaths {
		for _, n := range p {
			if hd, ok := n.AsHardDrive(); ok && hd.GUID() != "" {
				if s := m.slotByGUID(hd.Signature); s != "" {
					return s, nil
				}
			}
		}
	}
	return "", nil
}

// Order returns our slots in BootOrder's order.
func (m *Manager) Order() ([]string, error) {
	nv, err := m.load()
	if err != nil {
		return nil, err
	}
	var slots []string
	for _, n := range nv.order {
		if e, ok := nv.entries[n]; ok {
			if s := m.slotOf(e); s != "" && !slices.Contains(slots, s) {
				slots = append(slots, s)
			}
		}
	}
	return slots, nil
}

// Next returns the slot BootNext arms for the next boot: "" when BootNext
// is unset, "other" when it names an entry that is none of our slots.
func (m *Manager) Next() (string, error) {
	nv, err := m.load()
	if err != nil {
		return "", err
	}
	switch {
	case nv.next == nil:
		return "", nil
	case len(nv.next) != 2:
		return "", fmt.Errorf("efiboot: BootNext: %d bytes; expected 2", len(nv.next))
	}
	if e, ok := nv.entries[binary.LittleEndian.Uint16(nv.next)]; ok {
		if s := m.slotOf(e); s != "" {
			return s, nil
		}
	}
	return "other", nil
}

// SetNext makes the next boot, and only that one, start slot: the trial
// boot. It ensures the entries first, so BootNext never names a missing
// one.
func (m *Manager) SetNext(slot string) error {
	if err := m.check(); err != nil {
		return err
	}
	if _, err := m.slot(slot); err != nil {
		return err
	}
	nums, err := m.Ensure()
	if err != nil {
		return err
	}
	want := binary.LittleEndian.AppendUint16(nil, nums[slot])
	_, cur, err := m.Vars.Get("BootNext", GlobalGUID)
	if err == nil && string(cur) == string(want) {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("efiboot: BootNext: %w", err)
	}
	if err := m.Vars.Set("BootNext", GlobalGUID, AttrsBoot, want); err != nil {
		return fmt.Errorf("efiboot: write BootNext: %w", err)
	}
	return nil
}

// ClearNext cancels a pending trial boot.
func (m *Manager) ClearNext() error {
	if err := m.check(); err != nil {
		return err
	}
	err := m.Vars.Delete("BootNext", GlobalGUID)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("efiboot: delete BootNext: %w", err)
	}
	return nil
}

// Commit makes slot the one the firmware boots: BootOrder becomes slot,
// the other slot, then the foreign entries in their previous order. It
// repairs the entries first, like Ensure. BootNext is left alone: after a
// trial the firmware has consumed it already.
func (m *Manager) Commit(slot string) error {
	if err := m.check(); err != nil {
		return err
	}
	if _, err := m.slot(slot); err != nil {
		return err
	}
	nv, err := m.load()
	if err != nil {
		return err
	}
	_, err = m.apply(nv, slot, orderCommit)
	return err
}
