package firewall

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the appliance's one nftables table. Nothing else on the
// appliance adds rules, so owning a single table owns the whole policy.
const TableName = "pqbranch"

// rule is one generated rule; id is stored as the rule's user data so that
// verification can tell rules apart when reading them back.
type rule struct {
	id    string
	exprs []expr.Any
}

// chain is one base chain with its rules.
type chain struct {
	name   string
	typ    nftables.ChainType
	hook   *nftables.ChainHook
	prio   *nftables.ChainPriority
	policy nftables.ChainPolicy
	rules  []rule
}

func r(id string, parts ...[]expr.Any) rule {
	var all []expr.Any
	for _, p := range parts {
		all = append(all, p...)
	}
	return rule{id: id, exprs: all}
}

func verdict(e expr.Any) []expr.Any { return []expr.Any{e} }

// build turns a spec into chains. Order matters: the fail-closed IPsec rules
// come before the established-connection shortcut, so a connection set up
// while the tunnel was up cannot continue in clear once it is down.
func build(s Spec) []chain {
	const (
		est = expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
		inv = expr.CtStateBitINVALID
	)
	input := chain{name: "input", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, prio: nftables.ChainPriorityFilter, policy: nftables.ChainPolicyDrop}
	input.rules = []rule{
		r("in-established", ctState(est), verdict(accept())),
		r("in-invalid", ctState(inv), verdict(drop())),
		r("in-loopback", iif("lo"), verdict(accept())),
	}
	if !s.NoTunnel {
		input.rules = append(input.rules,
			r("in-wan-ike", iif(s.WAN), dport(unix.IPPROTO_UDP, 500), verdict(accept())),
			r("in-wan-ike-natt", iif(s.WAN), dport(unix.IPPROTO_UDP, 4500), verdict(accept())),
			r("in-wan-esp", iif(s.WAN), l4proto(unix.IPPROTO_ESP), verdict(accept())))
	}
	input.rules = append(input.rules,
		r("in-lan-mgmt", iif(s.LAN), dport(unix.IPPROTO_TCP, s.ManagementPort), verdict(accept())))
	// IPv6 on the LAN (the ULA) needs neighbour discovery.
	for _, t := range []byte{133, 135, 136} {
		input.rules = append(input.rules, r(fmt.Sprintf("in-lan-nd-%d", t), iif(s.LAN), icmpType(unix.IPPROTO_ICMPV6, t), verdict(accept())))
	}
	// Pinging the gateway is the first thing anyone on the branch LAN
	// checks; the WAN side stays silent.
	input.rules = append(input.rules,
		r("in-lan-ping", iif(s.LAN), icmpType(unix.IPPROTO_ICMP, 8), verdict(accept())),
		r("in-lan-ping6", iif(s.LAN), icmpType(unix.IPPROTO_ICMPV6, 128), verdict(accept())))
	if s.ServeDHCP {
		input.rules = append(input.rules, r("in-lan-dhcp", iif(s.LAN), dport(unix.IPPROTO_UDP, 67), verdict(accept())))
	}
	if s.ServeDNS {
		input.rules = append(input.rules,
			r("in-lan-dns-udp", iif(s.LAN), dport(unix.IPPROTO_UDP, 53), verdict(accept())),
			r("in-lan-dns-tcp", iif(s.LAN), dport(unix.IPPROTO_TCP, 53), verdict(accept())))
	}

	forward := chain{name: "forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, prio: nftables.ChainPriorityFilter, policy: nftables.ChainPolicyDrop}
	output := chain{name: "output", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, prio: nftables.ChainPriorityFilter, policy: nftables.ChainPolicyAccept}
	for i, p := range s.RemoteSubnets {
		forward.rules = append(forward.rules,
			r(fmt.Sprintf("fwd-remote-%d-clear-out", i), addr(p, false), ipsecRoute(false), verdict(drop())),
			r(fmt.Sprintf("fwd-remote-%d-clear-in", i), addr(p, true), decrypted(false), verdict(drop())))
		output.rules = append(output.rules,
			r(fmt.Sprintf("out-remote-%d-clear", i), addr(p, false), ipsecRoute(false), verdict(drop())))
	}
	forward.rules = append(forward.rules,
		r("fwd-established", ctState(est), verdict(accept())),
		r("fwd-invalid", ctState(inv), verdict(drop())))
	for i, p := range s.RemoteSubnets {
		forward.rules = append(forward.rules,
			r(fmt.Sprintf("fwd-remote-%d-out", i), iif(s.LAN), addr(p, false), ipsecRoute(true), verdict(accept())),
			r(fmt.Sprintf("fwd-remote-%d-in", i), oif(s.LAN), addr(p, true), decrypted(true), verdict(accept())))
	}
	// The NAT chain exists even without breakout, empty, so that every
	// ruleset has the same chains (see Apply).
	nat := chain{name: "postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, prio: nftables.ChainPriorityNATSource, policy: nftables.ChainPolicyAccept}
	if s.InternetBreakout {
		forward.rules = append(forward.rules, r("fwd-breakout", iif(s.LAN), oif(s.WAN), verdict(accept())))
		// Tunnel traffic keeps its LAN source: the IPsec policy selects on it.
		for i, p := range s.RemoteSubnets {
			nat.rules = append(nat.rules, r(fmt.Sprintf("nat-remote-%d-keep", i), addr(p, false), verdict(accept())))
		}
		nat.rules = append(nat.rules, r("nat-breakout", oif(s.WAN), []expr.Any{&expr.Masq{}}))
	}
	return []chain{input, forward, output, nat}
}
