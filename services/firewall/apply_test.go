package firewall

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// TestRulesetAsNftSeesIt checks the generated expressions against nft's own
// rendering of them, so the hand-built bytecode means what we think it means.
func TestRulesetAsNftSeesIt(t *testing.T) {
	ctx := context.Background()
	ns := nstest.New(t, "fwtext")[0]
	s := spec(8080, true)
	s.ServeDNS, s.ServeDHCP = true, true
	s.RemoteSubnets = append(s.RemoteSubnets, netip.MustParsePrefix("fd00:198:19::/48"))
	apply(t, ns, s)
	out, err := ns.Run(ctx, "nft", "list", "table", "inet", TableName)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"chain input {\n\t\ttype filter hook input priority filter; policy drop;",
		"chain forward {\n\t\ttype filter hook forward priority filter; policy drop;",
		"ct state established,related accept",
		`iifname "wan0" udp dport 500 accept`,
		`iifname "wan0" udp dport 4500 accept`,
		`iifname "wan0" meta l4proto esp accept`,
		`iifname "lan0" tcp dport 8080 accept`,
		`iifname "lan0" udp dport 67 accept`,
		`iifname "lan0" udp dport 53 accept`,
		"ip daddr 198.19.0.0/24 rt ipsec missing drop",
		"ip saddr 198.19.0.0/24 meta ipsec missing drop",
		"ip6 daddr fd00:198:19::/48 rt ipsec missing drop",
		`iifname "lan0" ip daddr 198.19.0.0/24 rt ipsec exists accept`,
		`oifname "lan0" ip saddr 198.19.0.0/24 meta ipsec exists accept`,
		`iifname "lan0" oifname "wan0" accept`,
		`oifname "wan0" masquerade`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if strings.Contains(out, `iifname "wan0" tcp`) {
		t.Error("a TCP port is open on the WAN")
	}
	if t.Failed() {
		t.Log(out)
	}
}

// TestVerifyCatchesTampering: a rule slipped in after Apply is detected.
func TestVerifyCatchesTampering(t *testing.T) {
	ctx := context.Background()
	ns := nstest.New(t, "fwver")[0]
	conn := nft(t, ns)
	s := spec(8080, false)
	if err := Apply(conn, s); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Run(ctx, "nft", "insert", "rule", "inet", TableName, "input", "tcp", "dport", "22", "accept"); err != nil {
		t.Fatal(err)
	}
	if err := verify(conn, s.table(), build(s)); err == nil || !strings.Contains(err.Error(), "chain input") {
		t.Fatalf("tampered ruleset verified: %v", err)
	}
	// Re-applying repairs it.
	if err := Apply(conn, s); err != nil {
		t.Fatal(err)
	}
	if out, _ := ns.Run(ctx, "nft", "list", "table", "inet", TableName); strings.Contains(out, "dport 22") {
		t.Fatalf("tampered rule survived re-apply:\n%s", out)
	}
}

func TestSpecValidate(t *testing.T) {
	for name, s := range map[string]Spec{
		"no wan":    {LAN: "lan0", ManagementPort: 80},
		"same":      {WAN: "eth0", LAN: "eth0", ManagementPort: 80},
		"long name": {WAN: "wan0123456789abcdef", LAN: "lan0", ManagementPort: 80},
		"no port":   {WAN: "wan0", LAN: "lan0"},
		"bad net":   {WAN: "wan0", LAN: "lan0", ManagementPort: 80, RemoteSubnets: []netip.Prefix{{}}},
	} {
		if err := s.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
