package efiboot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/uefivars"
	uboot "github.com/u-root/u-root/pkg/uefivars/boot"
)

// uefiOS is a Boot#### written by real firmware (from u-root's
// pkg/uefivars/boot): "UEFI OS",
// HD(1,GPT,81635ccd-1b4f-4d3f-b7b7-f78a5b029f35,0x40,0xf000)/File(\EFI\BOOT\BOOTX64.EFI),
// optional data 00 00 42 4f.
const uefiOS = "010000005e00550045004600490020004f0053000000" +
	"04012a0001000000400000000000000000f0000000000000cd5c63814f1b3f4db7b7f78a5b029f350202" +
	"040430005c004500460049005c0042004f004f0054005c0042004f004f0054005800360034002e0045004600490000007fff0400" +
	"0000424f"

func TestParseFirmwareLoadOption(t *testing.T) {
	raw, _ := hex.DecodeString(uefiOS)
	o, err := ParseLoadOption(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.Attributes != LoadOptionActive || o.Description != "UEFI OS" || len(o.FilePaths) != 1 || len(o.FilePaths[0]) != 2 {
		t.Fatalf("decoded %+v", o)
	}
	hd, ok := o.FilePaths[0][0].AsHardDrive()
	if !ok || hd.GUID() != "81635ccd-1b4f-4d3f-b7b7-f78a5b029f35" || hd.PartNumber != 1 || hd.StartLBA != 0x40 || hd.SizeLBA != 0xf000 {
		t.Fatalf("Hard Drive node %+v (GUID %s)", hd, hd.GUID())
	}
	if p, ok := o.FilePaths[0][1].AsFilePath(); !ok || p != `\EFI\BOOT\BOOTX64.EFI` {
		t.Fatalf("File Path node %q, %v", p, ok)
	}
	if !bytes.Equal(o.OptionalData, []byte{0, 0, 'B', 'O'}) {
		t.Fatalf("optional data %x", o.OptionalData)
	}
	again, err := o.Marshal()
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding differs: %v\n got %x\nwant %x", err, again, raw)
	}
}

func TestGUIDByteOrder(t *testing.T) {
	g, err := ParseGUID("81635CCD-1B4F-4D3F-B7B7-F78A5B029F35")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := hex.DecodeString("cd5c63814f1b3f4db7b7f78a5b029f35"); !bytes.Equal(g[:], want) {
		t.Fatalf("EFI byte order %x; want %x", g, want)
	}
	if s := FormatGUID(g); s != "81635ccd-1b4f-4d3f-b7b7-f78a5b029f35" {
		t.Fatalf("FormatGUID = %s", s)
	}
	for _, bad := range []string{"", "81635ccd1b4f4d3fb7b7f78a5b029f35", "81635ccd-1b4f-4d3f-b7b7-f78a5b029f3g", "81635ccd-1b4f-4d3f-b7b7-f78a5b029f355"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) accepted", bad)
		}
	}
}

var runes = []rune("abcXYZ 019-_\\.äß€中😀")

func randString(r *rand.Rand, max int) string {
	var b strings.Builder
	for range r.IntN(max + 1) {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	return b.String()
}

func randBytes(r *rand.Rand, max int) []byte {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randLoadOption is any load option Marshal accepts, shaped the way
// ParseLoadOption returns it (nil for empty lists and optional data).
func randLoadOption(r *rand.Rand) LoadOption {
	o := LoadOption{Attributes: r.Uint32(), Description: randString(r, 40)}
	for range 1 + r.IntN(3) {
		var p DevicePath
		for range r.IntN(4) {
			n := Node{Type: uint8(r.IntN(6)), SubType: uint8(r.Uint32()), Data: randBytes(r, 60)}
			switch r.IntN(4) {
			case 0:
				var g [16]byte
				for i := range g {
					g[i] = byte(r.Uint32())
				}
				hd, _ := GPTHardDrive(r.Uint32(), r.Uint64(), r.Uint64(), FormatGUID(g))
				n = hd.Node()
			case 1:
				n = FilePathNode(randString(r, 30))
			case 2:
				n = Node{Type: NodeEnd, SubType: SubEndInstance, Data: []byte{}}
			}
			p = append(p, n)
		}
		o.FilePaths = append(o.FilePaths, p)
	}
	if d := randBytes(r, 20); len(d) > 0 {
		o.OptionalData = d
	}
	return o
}

func TestLoadOptionRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		o := randLoadOption(r)
		b, err := o.Marshal()
		if err != nil {
			t.Fatalf("%d: Marshal: %v", i, err)
		}
		got, err := ParseLoadOption(b)
		if err != nil {
			t.Fatalf("%d: Parse: %v\n%x", i, err, b)
		}
		if !reflect.DeepEqual(got, o) {
			t.Fatalf("%d: round trip\n got %#v\nwant %#v", i, got, o)
		}
		// Without optional data, every truncation must be rejected: the
		// lengths inside promise bytes that are not there.
		o.OptionalData = nil
		b, _ = o.Marshal()
		for n := range len(b) {
			if _, err := ParseLoadOption(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%d: truncated to %d of %d bytes: err = %v; want ErrMalformed", i, n, len(b), err)
			}
		}
	}
}

func TestParseLoadOptionRejects(t *testing.T) {
	good := mustMarshal(t, LoadOption{Attributes: 1, Description: "x", FilePaths: []DevicePath{{FilePathNode(`\a`)}}})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"no description terminator", []byte{1, 0, 0, 0, 4, 0, 'x', 0}},
		{"path list longer than the rest", append(append([]byte{}, good[:4]...), append([]byte{0xff, 0}, good[6:]...)...)},
		{"empty path list", []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{"node shorter than its header", []byte{1, 0, 0, 0, 4, 0, 0, 0, 4, 4, 2, 0}},
		{"no End node", []byte{1, 0, 0, 0, 4, 0, 0, 0, 4, 4, 4, 0}},
		{"End node with data", []byte{1, 0, 0, 0, 6, 0, 0, 0, 0x7f, 0xff, 6, 0, 0, 0}},
	} {
		if _, err := ParseLoadOption(tc.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v; want ErrMalformed", tc.name, err)
		}
	}
}

func mustMarshal(t testing.TB, o LoadOption) []byte {
	t.Helper()
	b, err := o.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSlotEntryAgainstURoot decodes our entries with u-root's independent
// parser: another reader of EFI_LOAD_OPTION must see the same fields.
func TestSlotEntryAgainstURoot(t *testing.T) {
	m := testManager(NewMemVars(), "A")
	for _, s := range m.Slots {
		want, err := m.want(s)
		if err != nil {
			t.Fatal(err)
		}
		b := mustMarshal(t, want)
		v, err := uboot.BootVar(uefivars.EfiVar{UUID: GlobalGUID, Name: "Boot000A", Data: b})
		if err != nil {
			t.Fatalf("u-root rejects slot %s's entry: %v", s.Slot, err)
		}
		if v.Attributes != LoadOptionActive || v.Description != "pqbranch slot "+s.Slot || len(v.FilePathList) != 2 || len(v.OptionalData) != 0 {
			t.Fatalf("u-root reads %s", v)
		}
		hd, ok := v.FilePathList[0].(*uboot.DppMediaHDD)
		if !ok {
			t.Fatalf("first node %T; want a Hard Drive node", v.FilePathList[0])
		}
		if hd.Hdr.Length != 42 || hd.PartNum != s.PartNumber || hd.PartStart != s.StartLBA || hd.PartSize != s.SizeLBA ||
			hd.PartFmt != 2 || hd.SigType != 2 || !strings.EqualFold(hd.PartSig.ToStdEnc().String(), s.PartGUID) {
			t.Fatalf("u-root reads %s (%+v)", hd, hd)
		}
		fp, ok := v.FilePathList[1].(*uboot.DppMediaFilePath)
		if !ok || fp.PathNameDecoded != "/EFI/pqbranch/pqbranch.efi" { // u-root turns backslashes into slashes
			t.Fatalf("second node %s", v.FilePathList[1])
		}
	}
}

func FuzzParseLoadOption(f *testing.F) {
	raw, _ := hex.DecodeString(uefiOS)
	f.Add(raw)
	m := testManager(NewMemVars(), "A")
	want, _ := m.want(m.Slots[0])
	f.Add(mustMarshal(f, want))
	f.Add(mustMarshal(f, randLoadOption(rand.New(rand.NewPCG(3, 4)))))
	f.Add([]byte{1, 0, 0, 0, 4, 0, 0, 0, 0x7f, 0xff, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseLoadOption(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, p := range o.FilePaths {
			for _, n := range p {
				n.AsHardDrive()
				n.AsFilePath()
			}
		}
		// What decodes must encode to something that decodes the same.
		again, err := o.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a decoded option: %v", err)
		}
		o2, err := ParseLoadOption(again)
		if err != nil {
			t.Fatalf("re-encoded option rejected: %v", err)
		}
		if !reflect.DeepEqual(o, o2) {
			t.Fatalf("decode/encode/decode differs:\n%#v\n%#v", o, o2)
		}
	})
}
