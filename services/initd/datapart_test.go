package initd

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindPartitionByName(t *testing.T) {
	sys := t.TempDir()
	uevents := map[string]string{
		"vda":  "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda1": "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=pqb-slot-a\n",
		"vda3": "MAJOR=254\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=pqb-data\n",
		"sda1": "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=pqb-data-old\n",
	}
	for dev, ev := range uevents {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dev, "uevent"), []byte(ev), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if dev, err := findPartition(sys, "pqb-data"); err != nil || dev != "/dev/vda3" {
		t.Fatalf("findPartition = %q, %v; want /dev/vda3", dev, err)
	}
	if dev, err := findPartition(sys, "pqb-nothing"); err != nil || dev != "" {
		t.Fatalf("findPartition of a missing name = %q, %v; want none", dev, err)
	}
}

// TestEnsureExt4 formats a blank partition once, checks the result with the
// reference checker, and never formats it again.
func TestEnsureExt4(t *testing.T) {
	e2fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		t.Fatalf("e2fsck checks the created file system: %v (apt-get install e2fsprogs)", err)
	}
	dev := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dev, 64<<20); err != nil {
		t.Fatal(err)
	}
	created, err := ensureExt4(dev, "pqb-data")
	if err != nil || !created {
		t.Fatalf("blank partition: created=%v err=%v", created, err)
	}
	if out, err := exec.Command(e2fsck, "-f", "-n", dev).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck rejects the new file system: %v\n%s", err, out)
	}
	out, err := exec.Command("dumpe2fs", "-h", dev).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Filesystem volume name:   pqb-data") || !strings.Contains(string(out), "has_journal") {
		t.Fatalf("unexpected file system: %v\n%s", err, out)
	}
	sum := superblock(t, dev)
	created, err = ensureExt4(dev, "pqb-data")
	if err != nil || created {
		t.Fatalf("existing ext4: created=%v err=%v", created, err)
	}
	if superblock(t, dev) != sum {
		t.Fatal("existing file system was rewritten")
	}
}

func TestEnsureExt4RefusesForeignData(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "data.img")
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	if err := os.WriteFile(dev, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dev, 16<<20); err != nil {
		t.Fatal(err)
	}
	created, err := ensureExt4(dev, "pqb-data")
	if err == nil || created {
		t.Fatalf("foreign data: created=%v err=%v; want a refusal", created, err)
	}
	b, _ := os.ReadFile(dev)
	if string(b[:len(junk)]) != string(junk) {
		t.Fatal("foreign data was overwritten")
	}
}

func superblock(t *testing.T, dev string) string {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1024)
	if _, err := f.ReadAt(b, superblockOffset); err != nil {
		t.Fatal(err)
	}
	return string(b)
}
