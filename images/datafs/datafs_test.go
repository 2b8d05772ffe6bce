package datafs

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/layout"
)

const diskSize = 96 << 20

// testDisk writes a disk like the image's: two slots full of data and a
// blank data partition. It returns the path and the data region.
func testDisk(t *testing.T) (string, Region) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	d, err := diskfs.Create(p, diskSize, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 2048 + 16<<11 - 1, Type: gpt.LinuxFilesystem, Name: layout.SlotA},
		{Index: 2, Start: 2048 + 16<<11, End: 2048 + 32<<11 - 1, Type: gpt.LinuxFilesystem, Name: layout.SlotB},
		{Index: 3, Start: 2048 + 32<<11, End: diskSize/512 - 2048, Type: gpt.LinuxFilesystem, Name: layout.Data},
	}}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	d.Close()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	slots := make([]byte, 32<<20)
	rand.Read(slots)
	if _, err := f.WriteAt(slots, 2048*512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, err := FindData(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Start != (2048+32<<11)*512 {
		t.Fatalf("data partition at %d", r.Start)
	}
	return p, r
}

func TestProvision(t *testing.T) {
	disk, r := testDisk(t)
	before, _ := os.ReadFile(disk)
	cfg := []byte(`{"hostname": "site-42"}` + "\n")
	if err := Provision(disk, "pqbranch.json", cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(disk)
	if !bytes.Equal(before[:r.Start], after[:r.Start]) || !bytes.Equal(before[r.Start+r.Size:], after[r.Start+r.Size:]) {
		t.Fatal("provisioning changed bytes outside the data partition")
	}
	got, err := ReadFile(disk, "pqbranch.json")
	if err != nil || !bytes.Equal(got, cfg) {
		t.Fatalf("read back %q, %v", got, err)
	}

	// The reference tools agree: a clean ext4 named pqb-data, holding the
	// file at mode 0600.
	part := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(part, after[r.Start:r.Start+r.Size], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-f", "-n", part).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	out, err := exec.Command("debugfs", "-R", "stat /pqbranch.json", part).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Mode:  0600") || !strings.Contains(string(out), "Size: "+itoa(len(cfg))) {
		t.Fatalf("debugfs stat: %v\n%s", err, out)
	}
	out, _ = exec.Command("dumpe2fs", "-h", part).CombinedOutput()
	if !strings.Contains(string(out), "Filesystem volume name:   pqb-data") {
		t.Fatalf("label:\n%s", out)
	}

	// A partition already in use is never formatted over.
	if err := Provision(disk, "pqbranch.json", []byte("{}"), 0o600); err == nil || !strings.Contains(err.Error(), "not blank") {
		t.Fatalf("second provisioning: %v", err)
	}
}

func itoa(n int) string {
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
