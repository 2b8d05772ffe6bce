package efiboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	guidA    = "0b7c5a8e-1d2f-4e6a-9b3c-5d7e9f1a2b3c"
	guidB    = "6e4d2c1b-0a9f-4e8d-8c7b-6a5f4e3d2c1b"
	oldGUIDA = "11111111-2222-4333-8444-555555555555"
	oldGUIDB = "66666666-7777-4888-9999-aaaaaaaaaaaa"
	startA   = 2048
	startB   = 2048 + 262144
	slotLBAs = 262144
)

func testManager(v Vars, booted string) *Manager {
	return &Manager{Vars: v, Booted: booted, Slots: []SlotPartition{
		{Slot: "A", PartNumber: 1, PartGUID: guidA, StartLBA: startA, SizeLBA: slotLBAs},
		{Slot: "B", PartNumber: 2, PartGUID: guidB, StartLBA: startB, SizeLBA: slotLBAs},
	}}
}

func hdEntry(t testing.TB, part uint32, guid string, start uint64, file, desc string) LoadOption {
	hd, err := GPTHardDrive(part, start, slotLBAs, guid)
	if err != nil {
		t.Fatal(err)
	}
	return LoadOption{Attributes: LoadOptionActive, Description: desc, FilePaths: []DevicePath{{hd.Node(), FilePathNode(file)}}}
}

// diskEntry is what OVMF creates for a disk: PciRoot(0)/Pci(4,0), booting
// its removable-media path.
func diskEntry() LoadOption {
	return LoadOption{Attributes: LoadOptionActive, Description: "UEFI Misc Device", FilePaths: []DevicePath{{
		{Type: 2, SubType: 1, Data: []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}},
		{Type: 1, SubType: 1, Data: []byte{0, 4}},
	}}, OptionalData: []byte("N\xac>\xe6")}
}

// pxeEntry is a network boot entry; in the test world no server answers.
func pxeEntry() LoadOption {
	return LoadOption{Attributes: LoadOptionActive, Description: "UEFI PXEv4", FilePaths: []DevicePath{{
		{Type: 3, SubType: 11, Data: append(make([]byte, 32), 1)},
	}}}
}

func put(t testing.TB, v Vars, n uint16, o LoadOption) {
	t.Helper()
	if err := v.Set(bootEntryName(n), GlobalGUID, AttrsBoot, mustMarshal(t, o)); err != nil {
		t.Fatal(err)
	}
}

func setOrder(t testing.TB, v Vars, nums ...uint16) {
	t.Helper()
	if err := v.Set("BootOrder", GlobalGUID, AttrsBoot, encodeOrder(nums)); err != nil {
		t.Fatal(err)
	}
}

func getOrder(t testing.TB, v Vars) []uint16 {
	t.Helper()
	_, b, err := v.Get("BootOrder", GlobalGUID)
	if err != nil {
		t.Fatal(err)
	}
	return decodeOrder(b)
}

// installed is a box whose entries are right: A = Boot0000, B = Boot0001.
func installed(t testing.TB, v *MemVars, order ...uint16) {
	m := testManager(v, "A")
	for i, s := range m.Slots {
		w, _ := m.want(s)
		put(t, v, uint16(i), w)
	}
	setOrder(t, v, order...)
}

// boot runs the simulated firmware against the test disk, on which slot A
// (GUID guidA) and slot B (guidB) both carry the UKI and only A the
// removable path. It returns "A" or "B" for a boot from our entries,
// "A-removable" when nothing in BootOrder boots and the firmware falls
// back to the disk's removable path, and "Boot####" for another entry.
func boot(v *MemVars) string {
	var what string
	_, ok := v.Boot(func(n uint16, o LoadOption) bool {
		if len(o.FilePaths) == 0 || len(o.FilePaths[0]) == 0 {
			return false
		}
		first := o.FilePaths[0][0]
		if hd, ok := first.AsHardDrive(); ok && len(o.FilePaths[0]) == 2 {
			file, _ := o.FilePaths[0][1].AsFilePath()
			switch {
			case hd.GUID() == guidA && (strings.EqualFold(file, UKIPath) || strings.EqualFold(file, `\EFI\BOOT\BOOTX64.EFI`)):
				what = "A"
			case hd.GUID() == guidB && strings.EqualFold(file, UKIPath):
				what = "B"
			default:
				return false // no such partition or file on this machine
			}
			return true
		}
		if first.Type == 2 { // the disk itself: its removable-media path is slot A
			what = fmt.Sprintf("Boot%04X", n)
			return true
		}
		return false // network boot: nobody answers
	})
	if !ok {
		return "A-removable"
	}
	return what
}

func writeNames(ws []Write) []string {
	var s []string
	for _, w := range ws {
		s = append(s, w.String())
	}
	return s
}

// snapshot is every variable's attributes and data.
func snapshot(t testing.TB, v *MemVars) map[string]string {
	t.Helper()
	names, _ := v.Names()
	snap := map[string]string{}
	for _, full := range names {
		name, guid, _ := splitVarName(full)
		a, d, err := v.Get(name, guid)
		if err != nil {
			t.Fatal(err)
		}
		snap[full] = fmt.Sprintf("%x:%x", a, d)
	}
	return snap
}

func TestEnsure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(t testing.TB, v *MemVars)
		booted     string
		wantNums   map[string]uint16
		wantOrder  []uint16
		wantWrites []string
		keep       []uint16 // foreign entries, unchanged byte for byte
	}{{
		name:       "empty NVRAM",
		setup:      func(testing.TB, *MemVars) {},
		booted:     "A",
		wantNums:   map[string]uint16{"A": 0, "B": 1},
		wantOrder:  []uint16{0, 1},
		wantWrites: []string{"set Boot0000", "set Boot0001", "set BootOrder"},
	}, {
		name:       "empty NVRAM, booted B",
		setup:      func(testing.TB, *MemVars) {},
		booted:     "B",
		wantNums:   map[string]uint16{"B": 0, "A": 1},
		wantOrder:  []uint16{0, 1},
		wantWrites: []string{"set Boot0000", "set Boot0001", "set BootOrder"},
	}, {
		name: "firmware entries only, foreign entries kept",
		setup: func(t testing.TB, v *MemVars) {
			put(t, v, 0, diskEntry())
			put(t, v, 1, pxeEntry())
			// The firmware's own entry for slot A's removable path is
			// not ours: it loads another file.
			put(t, v, 5, hdEntry(t, 1, guidA, startA, `\EFI\BOOT\BOOTX64.EFI`, "UEFI OS"))
			setOrder(t, v, 1, 5, 0)
		},
		booted:     "A",
		wantNums:   map[string]uint16{"A": 2, "B": 3},
		wantOrder:  []uint16{2, 3, 1, 5, 0},
		wantWrites: []string{"set Boot0002", "set Boot0003", "set BootOrder"},
		keep:       []uint16{0, 1, 5},
	}, {
		name: "other slot's entry dropped by firmware",
		setup: func(t testing.TB, v *MemVars) {
			installed(t, v, 0, 1)
			v.Drop("Boot0001", GlobalGUID)
		},
		wantNums:   map[string]uint16{"A": 0, "B": 1},
		wantOrder:  []uint16{0, 1},
		wantWrites: []string{"set Boot0001"},
	}, {
		name: "entry dropped, BootOrder cleaned by firmware",
		setup: func(t testing.TB, v *MemVars) {
			installed(t, v, 1, 0)
			put(t, v, 2, pxeEntry())
			setOrder(t, v, 1, 2)
			v.Drop("Boot0000", GlobalGUID)
		},
		wantNums:   map[string]uint16{"B": 1, "A": 0},
		wantOrder:  []uint16{1, 0, 2},
		wantWrites: []string{"set Boot0000", "set BootOrder"},
		keep:       []uint16{2},
	}, {
		name: "stale partition GUIDs after a reflash",
		setup: func(t testing.TB, v *MemVars) {
			put(t, v, 0, diskEntry())
			put(t, v, 3, hdEntry(t, 1, oldGUIDA, startA, UKIPath, "pqbranch slot A"))
			put(t, v, 4, hdEntry(t, 2, oldGUIDB, startB, UKIPath, "pqbranch slot B"))
			setOrder(t, v, 4, 3, 0) // B was committed before the reflash
		},
		booted:    "A",
		wantNums:  map[string]uint16{"A": 3, "B": 4},
		wantOrder: []uint16{3, 4, 0},
		// Boot0004 becomes slot B only once BootOrder puts A ahead of it.
		wantWrites: []string{"set Boot0003", "set BootOrder", "set Boot0004"},
		keep:       []uint16{0},
	}, {
		name: "wrong start and renamed",
		setup: func(t testing.TB, v *MemVars) {
			installed(t, v, 0, 1)
			put(t, v, 0, hdEntry(t, 1, guidA, 4096, UKIPath, "my box"))
		},
		wantNums:   map[string]uint16{"A": 0, "B": 1},
		wantOrder:  []uint16{0, 1},
		wantWrites: []string{"set Boot0000"},
	}, {
		name: "inactive entry",
		setup: func(t testing.TB, v *MemVars) {
			installed(t, v, 0, 1)
			o := hdEntry(t, 2, guidB, startB, UKIPath, "pqbranch slot B")
			o.Attributes = 0
			put(t, v, 1, o)
		},
		wantNums:   map[string]uint16{"A": 0, "B": 1},
		wantOrder:  []uint16{0, 1},
		wantWrites: []string{"set Boot0001"},
	}, {
		name: "other slot missing from BootOrder",
		setup: func(t testing.TB, v *MemVars) {
			installed(t, v, 1)
			put(t, v, 2, pxeEntry())
			setOrder(t, v, 1, 2)
		},
		wantNums:   map[string]uint16{"A": 0, "B": 1},
		wantOrder:  []uint16{1, 0, 2},
		wantWrites: []string{"set BootOrder"},
		keep:       []uint16{2},
	}, {
		name: "right already, foreign entries between",
		setup: func(t testing.TB, v *MemVars) {
			installed(t, v)
			put(t, v, 2, pxeEntry())
			put(t, v, 3, diskEntry())
			setOrder(t, v, 2, 0, 3, 1)
		},
		wantNums:  map[string]uint16{"A": 0, "B": 1},
		wantOrder: []uint16{2, 0, 3, 1},
		keep:      []uint16{2, 3},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewMemVars()
			tc.setup(t, v)
			v = v.Clone() // forget the setup's writes
			before := v.Clone()
			initial := boot(before.Clone()) // what the machine boots now
			m := testManager(v, tc.booted)
			committed := m.committed(mustLoad(t, m))
			if committed == "" {
				committed = tc.booted
			}
			nums, err := m.Ensure()
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(nums, tc.wantNums) {
				t.Errorf("entries %v; want %v", nums, tc.wantNums)
			}
			if got := getOrder(t, v); !slices.Equal(got, tc.wantOrder) {
				t.Errorf("BootOrder %04X; want %04X", got, tc.wantOrder)
			}
			if got := writeNames(v.Writes()); !slices.Equal(got, tc.wantWrites) {
				t.Errorf("writes %q; want %q", got, tc.wantWrites)
			}
			for _, n := range tc.keep {
				_, b0, _ := before.Get(bootEntryName(n), GlobalGUID)
				_, b1, err := v.Get(bootEntryName(n), GlobalGUID)
				if err != nil || string(b0) != string(b1) {
					t.Errorf("foreign %s changed: %v", bootEntryName(n), err)
				}
			}
			for slot, n := range nums {
				_, b, _ := v.Get(bootEntryName(n), GlobalGUID)
				s, _ := m.slot(slot)
				if w, _ := m.want(s); string(b) != string(mustMarshal(t, w)) {
					t.Errorf("slot %s's %s is not the expected entry", slot, bootEntryName(n))
				}
			}
			if got := boot(v.Clone()); got != committed {
				t.Errorf("firmware boots %s; want the committed slot %s", got, committed)
			}
			final := snapshot(t, v)

			// Idempotence: nothing to do the second time.
			n := len(v.Writes())
			again, err := m.Ensure()
			if err != nil || !maps.Equal(again, nums) || len(v.Writes()) != n {
				t.Errorf("second Ensure: %v, %v, writes %q", again, err, writeNames(v.Writes()[n:]))
			}

			// A power cut after any prefix of the writes leaves a
			// machine that boots the committed slot, and the next
			// Ensure finishes the job.
			for cut := range len(tc.wantWrites) {
				c := before.Clone()
				c.PowerCutAfter(cut)
				if _, err := testManager(c, tc.booted).Ensure(); !errors.Is(err, ErrPowerCut) {
					t.Fatalf("cut after %d writes: err = %v; want ErrPowerCut", cut, err)
				}
				c.PowerOn()
				if got := boot(c.Clone()); got != committed && got != initial {
					t.Errorf("cut after %d writes (%q): firmware boots %s; want %s or, as before, %s", cut, writeNames(c.Writes()), got, committed, initial)
				}
				if _, err := testManager(c, tc.booted).Ensure(); err != nil {
					t.Fatalf("Ensure after the cut: %v", err)
				}
				if got := snapshot(t, c); !reflect.DeepEqual(got, final) {
					t.Errorf("cut after %d writes: Ensure ends in\n%v\nnot\n%v", cut, got, final)
				}
			}
		})
	}
}

func mustLoad(t testing.TB, m *Manager) *nvram {
	t.Helper()
	nv, err := m.load()
	if err != nil {
		t.Fatal(err)
	}
	return nv
}

func TestEnsureNeedsToKnowTheGoodSlot(t *testing.T) {
	v := NewMemVars()
	put(t, v, 0, diskEntry())
	setOrder(t, v, 0)
	if _, err := testManager(v, "").Ensure(); err == nil {
		t.Fatal("Ensure guessed a slot with neither BootOrder, Booted nor BootCurrent naming one")
	}
	if len(v.Writes()) != 2 { // the two of the setup
		t.Fatalf("failed Ensure wrote %q", writeNames(v.Writes()[2:]))
	}
	// BootCurrent naming an entry on slot B's partition is enough.
	put(t, v, 7, hdEntry(t, 2, guidB, startB, `\EFI\other.efi`, "manual"))
	if err := v.Set("BootCurrent", GlobalGUID, AttrBootserviceAccess|AttrRuntimeAccess, []byte{7, 0}); err != nil {
		t.Fatal(err)
	}
	m := testManager(v, "")
	if s, err := m.Current(); err != nil || s != "B" {
		t.Fatalf("Current = %q, %v; want B", s, err)
	}
	if _, err := m.Ensure(); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Order(); err != nil || !slices.Equal(got, []string{"B", "A"}) {
		t.Fatalf("Order = %v, %v; want [B A]", got, err)
	}
}

func TestCommit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(t testing.TB, v *MemVars)
		slot       string
		wantOrder  []uint16
		wantWrites []string
	}{
		{"swap", func(t testing.TB, v *MemVars) { installed(t, v, 0, 1) }, "B", []uint16{1, 0}, []string{"set BootOrder"}},
		{"already committed", func(t testing.TB, v *MemVars) { installed(t, v, 0, 1) }, "A", []uint16{0, 1}, nil},
		{"foreign entries keep their order", func(t testing.TB, v *MemVars) {
			installed(t, v)
			put(t, v, 2, pxeEntry())
			put(t, v, 3, diskEntry())
			setOrder(t, v, 2, 0, 3, 1)
		}, "B", []uint16{1, 0, 2, 3}, []string{"set BootOrder"}},
		{"empty NVRAM", func(testing.TB, *MemVars) {}, "B", []uint16{0, 1}, []string{"set Boot0000", "set Boot0001", "set BootOrder"}},
		{"entry of the new slot dropped", func(t testing.TB, v *MemVars) {
			installed(t, v, 0, 1)
			v.Drop("Boot0001", GlobalGUID)
		}, "B", []uint16{1, 0}, []string{"set Boot0001", "set BootOrder"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewMemVars()
			tc.setup(t, v)
			v = v.Clone() // forget the setup's writes
			before := v.Clone()
			old := boot(before.Clone())
			m := testManager(v, "")
			if err := m.Commit(tc.slot); err != nil {
				t.Fatal(err)
			}
			if got := getOrder(t, v); !slices.Equal(got, tc.wantOrder) {
				t.Errorf("BootOrder %04X; want %04X", got, tc.wantOrder)
			}
			if got := writeNames(v.Writes()); !slices.Equal(got, tc.wantWrites) {
				t.Errorf("writes %q; want %q", got, tc.wantWrites)
			}
			if got := boot(v.Clone()); got != tc.slot {
				t.Errorf("firmware boots %s after Commit(%s)", got, tc.slot)
			}
			n := len(v.Writes())
			if err := m.Commit(tc.slot); err != nil || len(v.Writes()) != n {
				t.Errorf("second Commit: %v, writes %q", err, writeNames(v.Writes()[n:]))
			}
			for cut := range len(tc.wantWrites) {
				c := before.Clone()
				c.PowerCutAfter(cut)
				if err := testManager(c, "").Commit(tc.slot); !errors.Is(err, ErrPowerCut) {
					t.Fatalf("cut after %d: err = %v", cut, err)
				}
				c.PowerOn()
				if got := boot(c); got != old && got != tc.slot {
					t.Errorf("cut after %d writes: firmware boots %s; want the old %s or the new %s", cut, got, old, tc.slot)
				}
			}
		})
	}
	if err := testManager(NewMemVars(), "").Commit("C"); err == nil {
		t.Error("Commit of an unknown slot succeeded")
	}
}

func TestTrialBoot(t *testing.T) {
	v := NewMemVars()
	installed(t, v, 0, 1)
	m := testManager(v, "")
	if err := m.SetNext("B"); err != nil {
		t.Fatal(err)
	}
	if got := writeNames(v.Writes()); !slices.Equal(got, []string{"set Boot0000", "set Boot0001", "set BootOrder", "set BootNext"}) {
		t.Fatalf("writes %q", got)
	}
	if _, next, err := v.Get("BootNext", GlobalGUID); err != nil || binary.LittleEndian.Uint16(next) != 1 {
		t.Fatalf("BootNext = %x, %v; want Boot0001", next, err)
	}
	if next, err := m.Next(); err != nil || next != "B" {
		t.Fatalf("Next = %q, %v; want B", next, err)
	}
	n := len(v.Writes())
	if err := m.SetNext("B"); err != nil || len(v.Writes()) != n {
		t.Fatalf("second SetNext: %v, writes %q", err, writeNames(v.Writes()[n:]))
	}
	// The trial: one boot of B, then back to the committed A.
	if got := boot(v); got != "B" {
		t.Fatalf("trial boot started %s", got)
	}
	if s, err := m.Current(); err != nil || s != "B" {
		t.Fatalf("Current = %q, %v during the trial", s, err)
	}
	if got := boot(v); got != "A" {
		t.Fatalf("boot after the trial started %s; want the committed A", got)
	}
	// Firmware that drops the trial entry falls back to A as well.
	if err := m.SetNext("B"); err != nil {
		t.Fatal(err)
	}
	v.Drop("Boot0001", GlobalGUID)
	if got := boot(v); got != "A" {
		t.Fatalf("boot with the trial entry dropped started %s", got)
	}
	// ClearNext cancels, and costs nothing when there is nothing to cancel.
	if err := m.SetNext("B"); err != nil {
		t.Fatal(err)
	}
	if err := m.ClearNext(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Get("BootNext", GlobalGUID); err == nil {
		t.Fatal("BootNext survived ClearNext")
	}
	if next, err := m.Next(); err != nil || next != "" {
		t.Fatalf("Next after ClearNext = %q, %v; want none", next, err)
	}
	n = len(v.Writes())
	if err := m.ClearNext(); err != nil || len(v.Writes()) != n {
		t.Fatalf("ClearNext without BootNext: %v, writes %q", err, writeNames(v.Writes()[n:]))
	}
	if got := boot(v); got != "A" {
		t.Fatalf("boot after ClearNext started %s", got)
	}
}

func TestCurrentForeign(t *testing.T) {
	v := NewMemVars()
	put(t, v, 0, diskEntry())
	setOrder(t, v, 0)
	if got := boot(v); got != "Boot0000" {
		t.Fatalf("boot = %s", got)
	}
	if s, err := testManager(v, "").Current(); err != nil || s != "" {
		t.Fatalf("Current = %q, %v; want \"\" for the firmware's disk entry", s, err)
	}
	if _, err := testManager(NewMemVars(), "").Current(); err == nil {
		t.Fatal("Current without BootCurrent succeeded")
	}
}

func TestManagerChecksSlots(t *testing.T) {
	for _, m := range []*Manager{
		{Vars: NewMemVars()},
		{Vars: NewMemVars(), Slots: []SlotPartition{{Slot: "A", PartGUID: guidA}, {Slot: "A", PartGUID: guidB}}},
		{Vars: NewMemVars(), Slots: []SlotPartition{{Slot: "A", PartGUID: guidA}, {Slot: "B", PartGUID: guidA}}},
		{Vars: NewMemVars(), Slots: []SlotPartition{{Slot: "A", PartGUID: guidA}, {Slot: "B", PartGUID: "nope"}}},
		{Slots: testManager(nil, "").Slots},
	} {
		if _, err := m.Ensure(); err == nil {
			t.Errorf("Ensure accepted %+v", m)
		}
	}
}
