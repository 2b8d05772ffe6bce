package appliance

import (
	"fmt"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/services/network"
)

// BoardOptions fills the board-specific options from the board file: NIC
// matches, default config and watchdog.
func BoardOptions(name string) (Options, error) {
	b, err := boards.Load(name)
	if err != nil {
		return Options{}, err
	}
	roles := b.Roles()
	match := func(role string) (network.Match, error) {
		n, ok := roles[role]
		if !ok {
			return network.Match{}, fmt.Errorf("appliance: board %s has no %s NIC", name, role)
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
	if o.DefaultConfig, err = b.DefaultConfigBytes(); err != nil {
		return Options{}, err
	}
	if b.Watchdog != "" {
		o.Watchdog = "/dev/watchdog"
	}
	o.Board = b.Name
	o.Tunnel = &IKETunnel{}
	return o, nil
}
