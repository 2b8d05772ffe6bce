package provision

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteStick checks the image WriteStick makes against the shape of a
// stick formatted by a desktop OS: 8 MiB, an MBR with one FAT16 (LBA)
// partition at 1 MiB, labelled PQBRANCH, holding the config byte for byte.
func TestWriteStick(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stick.img")
	cfg := []byte(`{"hostname": "branch-7", "serial": 3}`)
	if err := WriteStick(path, cfg); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != StickSize {
		t.Fatalf("image is %d bytes, want %d", len(raw), StickSize)
	}
	if raw[510] != 0x55 || raw[511] != 0xaa {
		t.Fatalf("no MBR signature: % x", raw[510:512])
	}
	entry := raw[446:462]
	if entry[4] != 0x0e {
		t.Errorf("partition type %#x, want 0x0e (FAT16 LBA)", entry[4])
	}
	if start := binary.LittleEndian.Uint32(entry[8:]); start != 2048 {
		t.Errorf("partition starts at sector %d, want 2048", start)
	}
	if size := binary.LittleEndian.Uint32(entry[12:]); size != (StickSize-1<<20)/512 {
		t.Errorf("partition is %d sectors, want %d", size, (StickSize-1<<20)/512)
	}
	vbr := raw[1<<20 : 1<<20+512]
	if got := string(vbr[0x36:0x3e]); got != "FAT16   " {
		t.Errorf("file system type %q, want FAT16", got)
	}
	if got := string(vbr[0x2b:0x36]); got != "PQBRANCH   " {
		t.Errorf("boot sector label %q, want PQBRANCH", got)
	}
	if hidden := binary.LittleEndian.Uint32(vbr[0x1c:]); hidden != 2048 {
		t.Errorf("hidden sectors %d, want 2048", hidden)
	}

	v := readVolumes(bytes.NewReader(raw), int64(len(raw)))
	if len(v) != 1 || v[0].label != Label || v[0].where != "partition 1" || v[0].fat.typ != FAT16 {
		t.Fatalf("read back %+v, want one FAT16 PQBRANCH volume in partition 1", v)
	}
	if got, err := v[0].readConfig(); err != nil || !bytes.Equal(got, cfg) {
		t.Fatalf("config read back %q, %v; want %q", got, err, cfg)
	}

	// Same config, same bytes: a stick image can be checked in and diffed.
	again := filepath.Join(t.TempDir(), "again.img")
	if err := WriteStick(again, cfg); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(again); !bytes.Equal(b, raw) {
		t.Error("two sticks of one config differ")
	}
	// A config the reader would refuse is refused at write time.
	if err := WriteStick(again, make([]byte, MaxConfigSize+1)); err == nil {
		t.Error("WriteStick took a config over MaxConfigSize")
	}
	// Renaming over a device node would replace it, not write the stick.
	if err := WriteStick(t.TempDir(), cfg); err == nil || !strings.Contains(err.Error(), "expected a regular file or none") {
		t.Errorf("WriteStick over a directory: %v", err)
	}
}
