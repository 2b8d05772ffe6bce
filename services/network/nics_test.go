package network

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeSysfs builds a /sys/class/net look-alike.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	net := filepath.Join(root, "class", "net")
	for _, n := range []struct{ name, typ, pci, driver, mac string }{
		{"enp2s0", "1", "0000:02:00.0", "igc", "52:54:00:00:00:02"},
		{"enp1s0", "1", "0000:01:00.0", "igc", "52:54:00:00:00:01"},
		{"enp3s0", "1", "0000:03:00.0", "e1000e", "52:54:00:00:00:03"},
		{"eth0", "1", "0000:00:04.0/virtio1", "virtio_net", "52:54:00:00:00:05"},
		{"eth1", "1", "0000:00:03.0/virtio0", "virtio_net", "52:54:00:00:00:04"},
		{"lo", "772", "", "", "00:00:00:00:00:00"},
		{"veth0", "1", "", "", "52:54:00:00:00:09"},
	} {
		dir := filepath.Join(net, n.name)
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "type"), []byte(n.typ+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "address"), []byte(n.mac+"\n"), 0o644))
		if n.pci == "" {
			continue
		}
		dev := filepath.Join(root, "devices", n.pci)
		drv := filepath.Join(root, "drivers", n.driver)
		must(t, os.MkdirAll(dev, 0o755))
		must(t, os.MkdirAll(drv, 0o755))
		must(t, os.Symlink(drv, filepath.Join(dev, "driver")))
		must(t, os.Symlink(dev, filepath.Join(dir, "device")))
	}
	return net
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	sys := fakeSysfs(t)
	idx := func(i int) *int { return &i }
	cases := []struct {
		name     string
		wan, lan Match
		want     Roles
		bad      bool
	}{
		{"by index", Match{Index: idx(2)}, Match{Index: idx(3)}, Roles{"enp1s0", "enp2s0"}, false},
		{"by driver index", Match{Driver: "igc", Index: idx(1)}, Match{Driver: "e1000e", Index: idx(0)}, Roles{"enp2s0", "enp3s0"}, false},
		{"by pci", Match{PCI: "0000:03:00.0"}, Match{PCI: "0000:01:00.0"}, Roles{"enp3s0", "enp1s0"}, false},
		{"virtio by driver index", Match{Driver: "virtio_net", Index: idx(0)}, Match{Driver: "virtio_net", Index: idx(1)}, Roles{"eth1", "eth0"}, false},
		{"by mac", Match{MAC: "52:54:00:00:00:02"}, Match{Name: "enp1s0"}, Roles{"enp2s0", "enp1s0"}, false},
		{"virtual ignored", Match{MAC: "52:54:00:00:00:09"}, Match{Index: idx(0)}, Roles{}, true},
		{"plain names", Match{Name: "veth0"}, Match{Name: "enp1s0"}, Roles{"veth0", "enp1s0"}, false},
		{"ambiguous", Match{Driver: "igc"}, Match{Index: idx(2)}, Roles{}, true},
		{"same nic", Match{Index: idx(2)}, Match{PCI: "0000:01:00.0"}, Roles{}, true},
		{"index too big", Match{Index: idx(5)}, Match{Index: idx(0)}, Roles{}, true},
	}
	for _, tc := range cases {
		got, err := Resolve(sys, tc.wan, tc.lan)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: resolved to %+v, want error", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
