package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDHCPSettings(t *testing.T) {
	c, err := Parse("full", readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := c.DHCP()
	if !ok {
		t.Fatal("no DHCP settings")
	}
	if s.Server != netip.MustParseAddr("198.18.1.1") || s.Subnet != netip.MustParsePrefix("198.18.1.0/24") ||
		s.Start != netip.MustParseAddr("198.18.1.100") || s.End != netip.MustParseAddr("198.18.1.199") || s.LeaseTime != 12*time.Hour {
		t.Errorf("settings %+v", s)
	}
	if len(s.Reservations) != 1 || s.Reservations[0].MAC.String() != "52:54:00:12:34:56" || s.Reservations[0].Address != netip.MustParseAddr("198.18.1.20") {
		t.Errorf("reservations %+v", s.Reservations)
	}
	if src, ok := c.InternalSource(); !ok || src != netip.MustParseAddr("198.18.1.1") {
		t.Errorf("internal source %v %v", src, ok)
	}
}

func TestDefaultPool(t *testing.T) {
	for _, tc := range []struct{ lan, start, end string }{
		{"198.18.1.1/24", "198.18.1.128", "198.18.1.254"},
		{"10.0.0.1/30", "10.0.0.2", "10.0.0.2"},
		{"10.0.0.1/16", "10.0.239.255", "10.0.255.254"}, // capped at MaxPool
	} {
		c := &Config{LAN: LAN{Addresses: []netip.Prefix{netip.MustParsePrefix(tc.lan)}}}
		s, ok := c.DHCP()
		if !ok || s.Start.String() != tc.start || s.End.String() != tc.end {
			t.Errorf("%s: pool %v-%v, want %s-%s", tc.lan, s.Start, s.End, tc.start, tc.end)
		}
		if n := poolSize(s.Start, s.End); n > MaxPool {
			t.Errorf("%s: pool of %d", tc.lan, n)
		}
	}
}

func TestBadLANServices(t *testing.T) {
	dhcp := func(m map[string]any) map[string]any { return sub(m, "lan", "dhcp") }
	res := func(m map[string]any) map[string]any {
		return dhcp(m)["reservations"].([]any)[0].(map[string]any)
	}
	internal := func(m map[string]any) map[string]any {
		return sub(m, "dns")["internal"].([]any)[0].(map[string]any)
	}
	cases := []struct {
		name   string
		raw    []byte
		field  string
		expect string
	}{
		{"pool outside", edit(t, func(m map[string]any) { dhcp(m)["pool"] = map[string]any{"start": "198.18.2.10", "end": "198.18.1.20"} }), "lan.dhcp.pool.start", "inside the LAN subnet 198.18.1.0/24"},
		{"pool reversed", edit(t, func(m map[string]any) {
			dhcp(m)["pool"] = map[string]any{"start": "198.18.1.200", "end": "198.18.1.100"}
		}), "lan.dhcp.pool", "at or before end"},
		{"pool broadcast", edit(t, func(m map[string]any) {
			dhcp(m)["pool"] = map[string]any{"start": "198.18.1.200", "end": "198.18.1.255"}
		}), "lan.dhcp.pool.end", "expected a host address"},
		{"pool bad addr", edit(t, func(m map[string]any) {
			dhcp(m)["pool"] = map[string]any{"start": "198.18.1.300", "end": "198.18.1.20"}
		}), "lan.dhcp.pool.start", "expected an IP address"},
		{"pool unknown", edit(t, func(m map[string]any) { dhcp(m)["pool"] = map[string]any{"first": "198.18.1.3"} }), "lan.dhcp.pool.first", "unknown field; expected one of: start, end"},
		{"lease short", edit(t, func(m map[string]any) { dhcp(m)["lease_time"] = "30s" }), "lan.dhcp.lease_time", `expected a duration from "2m" to "7d"`},
		{"lease days", edit(t, func(m map[string]any) { dhcp(m)["lease_time"] = "8d" }), "lan.dhcp.lease_time", `got "8d"`},
		{"bad mac", edit(t, func(m map[string]any) { res(m)["mac"] = "52:54:00:12:34" }), "lan.dhcp.reservations[0].mac", "expected an Ethernet MAC address"},
		{"res outside", edit(t, func(m map[string]any) { res(m)["address"] = "192.0.2.20" }), "lan.dhcp.reservations[0].address", "inside the LAN subnet"},
		{"res appliance", edit(t, func(m map[string]any) { res(m)["address"] = "198.18.1.1" }), "lan.dhcp.reservations[0].address", "other than the appliance's own"},
		{"res dup mac", edit(t, func(m map[string]any) {
			dhcp(m)["reservations"] = []any{res(m), map[string]any{"mac": "52-54-00-12-34-56", "address": "198.18.1.21"}}
		}), "lan.dhcp.reservations[1].mac", "also in reservations[0]"},
		{"res dup addr", edit(t, func(m map[string]any) {
			dhcp(m)["reservations"] = []any{res(m), map[string]any{"mac": "52:54:00:12:34:57", "address": "198.18.1.20"}}
		}), "lan.dhcp.reservations[1].address", "also in reservations[0]"},
		{"res hostname", edit(t, func(m map[string]any) { res(m)["hostname"] = "a.b" }), "lan.dhcp.reservations[0].hostname", "host name label"},
		{"dhcp without v4", edit(t, func(m map[string]any) { sub(m, "lan")["addresses"] = []any{"fd00::1/64"} }), "lan.addresses", "IPv4 address"},
		{"internal outside tunnel", edit(t, func(m map[string]any) { internal(m)["servers"] = []any{"192.0.2.53"} }), "dns.internal[0].servers[0]", "inside tunnel.remote_subnets"},
		{"internal no tunnel", edit(t, func(m map[string]any) { m["tunnel"] = nil }), "dns.internal[0].servers[0]", "no tunnel is configured"},
		{"internal no servers", edit(t, func(m map[string]any) { internal(m)["servers"] = []any{} }), "dns.internal[0].servers", "expected 1..3"},
		{"internal bad domain", edit(t, func(m map[string]any) { internal(m)["domain"] = "corp example" }), "dns.internal[0].domain", "expected a domain name"},
		{"internal bad addr", edit(t, func(m map[string]any) { internal(m)["servers"] = []any{"198.19.0.300"} }), "dns.internal[0].servers[0]", "expected an IP address"},
		{"internal unknown", edit(t, func(m map[string]any) { internal(m)["server"] = "x" }), "dns.internal[0].server", "unknown field; expected one of: domain, servers"},
		{"internal no source", edit(t, func(m map[string]any) { sub(m, "tunnel")["local_subnets"] = []any{"198.18.9.0/24"} }), "dns.internal", "inside tunnel.local_subnets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/data/pqbranch.json", tc.raw)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want *Error", err)
			}
			for _, f := range ce.Fields {
				if f.Field == tc.field && strings.Contains(f.Problem, tc.expect) {
					return
				}
			}
			t.Errorf("want field %q with %q, got:\n%v", tc.field, tc.expect, err)
		})
	}
}
