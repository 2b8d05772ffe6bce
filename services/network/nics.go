package network

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Match picks one NIC, as the board file describes it: by name, MAC, PCI
// address, or by index among the Ethernet NICs sorted by PCI address
// (optionally only those bound to Driver).
type Match struct {
	Name   string
	MAC    string
	PCI    string
	Driver string
	Index  *int
}

var pciAddr = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

type nic struct {
	name, mac, pci, driver string
}

// Resolve maps the wan and lan matches to interface names using sysfs
// (normally /sys/class/net).
func Resolve(sysfs string, wan, lan Match) (Roles, error) {
	nics, err := listNICs(sysfs)
	if err != nil {
		return Roles{}, err
	}
	w, err := pick(nics, wan)
	if err != nil {
		return Roles{}, fmt.Errorf("network: wan: %w", err)
	}
	l, err := pick(nics, lan)
	if err != nil {
		return Roles{}, fmt.Errorf("network: lan: %w", err)
	}
	if w == l {
		return Roles{}, fmt.Errorf("network: wan and lan both match %s", w)
	}
	return Roles{WAN: w, LAN: l}, nil
}

// listNICs returns the physical Ethernet interfaces, sorted by PCI address
// so that an index means the same port on every boot.
func listNICs(sysfs string) ([]nic, error) {
	entries, err := os.ReadDir(sysfs)
	if err != nil {
		return nil, fmt.Errorf("network: list interfaces: %w", err)
	}
	var nics []nic
	for _, e := range entries {
		dir := filepath.Join(sysfs, e.Name())
		if typ, _ := os.ReadFile(filepath.Join(dir, "type")); strings.TrimSpace(string(typ)) != "1" {
			continue // not Ethernet (ARPHRD_ETHER)
		}
		dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device"))
		if err != nil {
			continue // virtual: no device behind it
		}
		// virtio NICs hang below their PCI function (.../0000:00:03.0/virtio0).
		pci := filepath.Base(dev)
		if !pciAddr.MatchString(pci) {
			pci = filepath.Base(filepath.Dir(dev))
		}
		n := nic{name: e.Name(), pci: pci}
		if mac, err := os.ReadFile(filepath.Join(dir, "address")); err == nil {
			n.mac = strings.TrimSpace(string(mac))
		}
		if drv, err := filepath.EvalSymlinks(filepath.Join(dir, "device", "driver")); err == nil {
			n.driver = filepath.Base(drv)
		}
		nics = append(nics, n)
	}
	slices.SortFunc(nics, func(a, b nic) int { return strings.Compare(a.pci, b.pci) })
	return nics, nil
}

func pick(nics []nic, m Match) (string, error) {
	if m.Name != "" && m.MAC == "" && m.PCI == "" && m.Driver == "" && m.Index == nil {
		// A plain name is taken as given, virtual interfaces included.
		return m.Name, nil
	}
	var cands []nic
	for _, n := range nics {
		if (m.Driver == "" || n.driver == m.Driver) &&
			(m.Name == "" || n.name == m.Name) &&
			(m.MAC == "" || strings.EqualFold(n.mac, m.MAC)) &&
			(m.PCI == "" || n.pci == m.PCI) {
			cands = append(cands, n)
		}
	}
	switch {
	case m.Index != nil:
		if *m.Index >= len(cands) {
			return "", fmt.Errorf("index %d, but only %d matching NICs", *m.Index, len(cands))
		}
		return cands[*m.Index].name, nil
	case len(cands) == 1:
		return cands[0].name, nil
	case len(cands) == 0:
		return "", fmt.Errorf("no NIC matches %+v", m)
	}
	return "", fmt.Errorf("%d NICs match %+v; make the match specific", len(cands), m)
}
