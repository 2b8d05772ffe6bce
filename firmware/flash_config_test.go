package firmware

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pqbranch/pqbranch/images/datafs"
	"github.com/pqbranch/pqbranch/images/layout"
	"github.com/pqbranch/pqbranch/services/config"
)

// gptImage is a disk image laid out like the build's: two slots full of
// data and a blank data partition.
func gptImage(t *testing.T) string {
	t.Helper()
	const size = 96 << 20
	p := filepath.Join(t.TempDir(), "disk.img")
	d, err := diskfs.Create(p, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 34815, Type: gpt.LinuxFilesystem, Name: layout.SlotA},
		{Index: 2, Start: 34816, End: 67583, Type: gpt.LinuxFilesystem, Name: layout.SlotB},
		{Index: 3, Start: 67584, End: size/512 - 2048, Type: gpt.LinuxFilesystem, Name: layout.Data},
	}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	slots := make([]byte, 32<<20)
	rand.Read(slots)
	f.WriteAt(slots, 2048*512)
	f.Close()
	return p
}

func fileSum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// Flashing with a site config writes the image, then the config onto the
// data partition; the image file is unchanged and one image serves every
// site. A config the appliance would reject stops the flash before a byte
// is written.
func TestFlashWithSiteConfig(t *testing.T) {
	img := gptImage(t)
	imgSum := fileSum(t, img)
	site, err := os.ReadFile("../services/config/testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(t.TempDir(), "device.img") // a file-backed "device"
	var progress bytes.Buffer
	if err := Flash(context.Background(), img, dev, FlashOptions{Config: site, ConfigName: "site.json", Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, img) != imgSum {
		t.Fatal("flashing with a config changed the image file")
	}
	got, err := datafs.ReadFile(dev, "pqbranch.json")
	if err != nil || !bytes.Equal(got, site) {
		t.Fatalf("config on the data partition: %v\n%s", err, got)
	}
	if _, err := config.Parse("on the device", got); err != nil {
		t.Fatalf("the appliance rejects what was written: %v", err)
	}
	r, err := datafs.FindData(dev)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(dev)
	if !bytes.Equal(a[:r.Start], b[:r.Start]) || !bytes.Equal(a[r.Start+r.Size:], b[r.Start+r.Size:]) {
		t.Fatal("the device differs from the image outside the data partition")
	}
	if !strings.Contains(progress.String(), "wrote the site config site.json") {
		t.Errorf("progress:\n%s", progress.String())
	}

	// A bad config: the error names the file and the field; nothing written.
	bad := bytes.Replace(site, []byte(`"mode": "static"`), []byte(`"mode": "pppoe"`), 1)
	dev2 := filepath.Join(t.TempDir(), "device2.img")
	err = Flash(context.Background(), img, dev2, FlashOptions{Config: bad, ConfigName: "site.json"})
	if err == nil || !strings.Contains(err.Error(), `site.json: wan.mode: expected "dhcp" or "static", got "pppoe"`) || !strings.Contains(err.Error(), "nothing written") {
		t.Fatalf("bad config: %v", err)
	}
	if _, err := os.Stat(dev2); !os.IsNotExist(err) {
		t.Fatalf("a bad config still wrote the device: %v", err)
	}
}
