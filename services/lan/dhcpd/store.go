package dhcpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/services/internal/atomicfile"
)

// The lease file keeps bound leases on /data, so LAN hosts keep their
// addresses across reboots and A/B updates. Offers are not kept: they last
// a minute.

// maxLeaseFile bounds what is read back: MaxPool leases are well under it.
const maxLeaseFile = 1 << 20

type leaseFile struct {
	Version int           `json:"version"`
	Leases  []storedLease `json:"leases"`
}

type storedLease struct {
	MAC      string    `json:"mac"`
	Address  string    `json:"address"`
	Expires  time.Time `json:"expires"`
	Hostname string    `json:"hostname,omitempty"`
}

// encodeLeases renders the bound leases, sorted for stable files.
func (t *table) encodeLeases() []byte {
	f := leaseFile{Version: 1, Leases: []storedLease{}}
	for _, l := range t.byMAC {
		if l.State == bound {
			f.Leases = append(f.Leases, storedLease{MAC: l.MAC, Address: l.Addr.String(), Expires: l.Expiry.UTC(), Hostname: l.Hostname})
		}
	}
	slices.SortFunc(f.Leases, func(a, b storedLease) int { return strings.Compare(a.Address, b.Address) })
	b, _ := json.MarshalIndent(f, "", "  ")
	return append(b, '\n')
}

// decodeLeases parses a lease file. It is strict about the shape and
// skips, without failing, leases the current config no longer allows (the
// pool or a reservation changed): those clients simply get a new address.
func decodeLeases(b []byte) ([]storedLease, error) {
	if len(b) > maxLeaseFile {
		return nil, fmt.Errorf("%d bytes, expected at most %d", len(b), maxLeaseFile)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("version %d, expected 1", f.Version)
	}
	return f.Leases, nil
}

// restore puts stored leases back into the table, keeping those the
// settings still allow; it returns how many it kept.
func (t *table) restore(leases []storedLease, now time.Time) int {
	n := 0
	for _, sl := range leases {
		hw, err := net.ParseMAC(sl.MAC)
		a, aerr := netip.ParseAddr(sl.Address)
		if err != nil || len(hw) != 6 || aerr != nil {
			continue
		}
		mac := macKey(hw)
		// Expired leases come back too: they make the client's old
		// address its first choice. canHave ignores expiry of the
		// client's own entry, and the check is against the config now.
		if !t.canHave(mac, a, now) || t.byMAC[mac] != nil {
			continue
		}
		h := sl.Hostname
		if len(h) > 63 || strings.Trim(h, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			h = ""
		}
		t.set(mac, a, bound, sl.Expires, h)
		n++
	}
	return n
}

// loadLeases reads the lease file; a missing file is an empty one.
func (t *table) loadLeases(path string, now time.Time) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("dhcp: leases: %w", err)
	}
	leases, err := decodeLeases(b)
	if err != nil {
		return 0, fmt.Errorf("dhcp: leases %s: %w", path, err)
	}
	return t.restore(leases, now), nil
}

func saveLeases(path string, b []byte) error {
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("dhcp: leases: %w", err)
	}
	return nil
}
