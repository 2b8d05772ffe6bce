package appliance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/network"
)

// ImageOptions fills the board-specific options from what the build wrote
// into the image under dir (/etc/pqbranch on the appliance): board.json for
// the NIC matches and watchdog, default-config.json for first boot. It never
// consults the build's board catalogue, so an image built from a board file
// outside boards/ boots just the same.
func ImageOptions(dir string) (Options, error) {
	boardFile := filepath.Join(dir, filepath.Base(release.BoardFile))
	raw, err := os.ReadFile(boardFile)
	if err != nil {
		return Options{}, fmt.Errorf("appliance: %w", err)
	}
	b, err := boards.ParseInstalled(boardFile, raw)
	if err != nil {
		return Options{}, fmt.Errorf("appliance: %w", err)
	}
	roles := b.Roles()
	match := func(role string) (network.Match, error) {
		n, ok := roles[role]
		if !ok {
			return network.Match{}, fmt.Errorf("appliance: %s: board %s has no %s NIC", boardFile, b.Name, role)
		}
		return network.Match{PCI: n.PCI, Driver: n.Driver, Index: n.Index}, nil
	}
	var o Options
	if o.WAN, err = match("wan"); err != nil {
		return Options{}, err
	}
	if o.LAN, err = match("lan"); err != nil {
		return Options{}, err
	}
	def := filepath.Join(dir, filepath.Base(release.DefaultConfigFile))
	if o.DefaultConfig, err = os.ReadFile(def); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Options{}, fmt.Errorf("appliance: board default config: %w", err)
	}
	if b.Watchdog != "" {
		o.Watchdog = "/dev/watchdog"
	}
	o.Board = b.Name
	o.Tunnel = &IKETunnel{}
	return o, nil
}
