package appliance

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/network"
)

// Each edit of the example config restarts exactly the services that read
// the edited part.
func TestRestartsFor(t *testing.T) {
	raw, err := os.ReadFile("../config/testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	parse := func(edit func(m map[string]any)) *config.Config {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		c, err := config.Parse("edited", b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	obj := func(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }
	a := &Appliance{roles: network.Roles{WAN: "wan0", LAN: "lan0"}}
	base := parse(func(map[string]any) {})
	for _, tc := range []struct {
		name string
		edit func(m map[string]any)
		want []string
	}{
		{"nothing", func(map[string]any) {}, nil},
		{"tunnel psk", func(m map[string]any) { obj(m, "tunnel")["psk"] = "another-psk-of-enough-length" }, []string{"tunnel"}},
		{"remote subnets", func(m map[string]any) { obj(m, "tunnel")["remote_subnets"] = []any{"198.19.0.0/16"} }, []string{"firewall", "tunnel"}},
		{"resolvers", func(m map[string]any) { obj(m, "dns")["servers"] = []any{"192.0.2.54"} }, nil},
		{"search", func(m map[string]any) { obj(m, "dns")["search"] = []any{"other.example"} }, []string{"dhcp"}},
		{"internal domains", func(m map[string]any) {
			obj(m, "dns")["internal"] = []any{map[string]any{"domain": "hr.example", "servers": []any{"198.19.0.54"}}}
		}, []string{"dns"}},
		{"lease time", func(m map[string]any) { obj(obj(m, "lan"), "dhcp")["lease_time"] = "1h" }, []string{"dhcp"}},
		{"ntp", func(m map[string]any) { obj(m, "time")["ntp"] = []any{"192.0.2.9"} }, []string{"time"}},
		{"port", func(m map[string]any) { obj(m, "firewall")["management_port"] = 8443 }, []string{"firewall", "status"}},
		{"mtu", func(m map[string]any) { m["mtu"] = 1400 }, []string{"network", "ra"}},
		{"window", func(m map[string]any) { obj(m, "update")["window"] = "daily 03:00-04:00" }, []string{"update"}},
		{"syslog server", func(m map[string]any) { obj(obj(m, "log"), "syslog")["server"] = "192.0.2.51" }, []string{"syslog"}},
		{"syslog off", func(m map[string]any) { delete(m, "log") }, []string{"syslog"}},
		{"hostname", func(m map[string]any) { m["hostname"] = "branch-8" }, []string{"syslog", "network"}},
		{"lan address", func(m map[string]any) {
			l := obj(m, "lan")
			l["addresses"] = []any{"198.18.1.2/24"}
			delete(l, "dhcp")
		}, []string{"network", "dhcp", "dns", "status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.restartsFor(base, parse(tc.edit)); !slices.Equal(got, tc.want) {
				t.Errorf("restarts %v, want %v", got, tc.want)
			}
		})
	}
	if got := a.restartsFor(nil, base); !slices.Equal(got, reloadable) {
		t.Errorf("no previous config: restarts %v, want all", got)
	}
}
