package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/firewall"
)

// Every board carries a default config the appliance accepts. A real
// board's is the safe first boot: WAN by DHCP, a LAN address handed out by
// DHCP with DNS, status on the LAN, no tunnel and so nothing open on the
// WAN (not even IKE).
func TestBoardDefaultConfigs(t *testing.T) {
	for _, name := range boards.Names() {
		t.Run(name, func(t *testing.T) {
			b, err := boards.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := b.DefaultConfigBytes()
			if err != nil || len(raw) == 0 {
				t.Fatalf("no default config: %v", err)
			}
			c, err := config.Parse(name, raw)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(name, "qemu-") {
				return // the lab's board comes up with the lab's tunnel
			}
			spec := firewall.SpecFrom(c, "wan0", "lan0")
			if c.WAN.Mode != "dhcp" || c.Tunnel != nil || !spec.NoTunnel || spec.InternetBreakout || !spec.ServeDHCP || !spec.ServeDNS || spec.ManagementPort != 80 {
				t.Errorf("not a safe first-boot default: wan %s tunnel %v firewall %+v", c.WAN.Mode, c.Tunnel != nil, spec)
			}
			if _, ok := c.DHCP(); !ok {
				t.Error("no DHCP pool on the LAN")
			}
		})
	}
	// Each board file that names a default has one beside it.
	files, _ := filepath.Glob("../../boards/*.config.json")
	if len(files) < 3 {
		t.Errorf("default configs: %v", files)
	}
	for _, f := range files {
		if _, err := os.Stat(strings.TrimSuffix(f, ".config.json") + ".json"); err != nil {
			t.Errorf("%s belongs to no board", f)
		}
	}
}
