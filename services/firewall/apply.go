package firewall

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Apply installs the ruleset for s in ONE netlink batch, which the kernel
// commits as one transaction, then reads the table back and checks that the
// kernel holds what was generated.
//
// The batch flushes the rules of the existing chains and adds the new ones;
// it never deletes and recreates a base chain. A new base chain is hooked
// while the batch is prepared but gets its drop policy only at commit, and a
// deleted one stops filtering before that: deleting and recreating the table
// opens a window in which packets pass unfiltered (TestNonAtomicReapplyIsCaught
// and the kernel's behaviour that TestReapplyIsAtomic guards). Rules, in
// contrast, switch generation atomically at commit. So every ruleset has the
// same chains, and only their rules and policies change.
func Apply(conn *nftables.Conn, s Spec) error {
	if err := s.validate(); err != nil {
		return err
	}
	chains := build(s)
	t := s.table()
	same, err := sameChains(conn, chains)
	if err != nil {
		return err
	}
	if same {
		conn.FlushTable(t)
	} else {
		// First boot, or chains left by another version: start over. This
		// is the one case that cannot be gapless; before it, no ruleset of
		// ours was in force anyway or its shape was foreign.
		conn.AddTable(t)
		conn.DelTable(t)
		conn.AddTable(t)
	}
	for _, c := range chains {
		policy := c.policy
		nc := conn.AddChain(&nftables.Chain{Name: c.name, Table: t, Type: c.typ, Hooknum: c.hook, Priority: c.prio, Policy: &policy})
		for _, rl := range c.rules {
			conn.AddRule(&nftables.Rule{Table: t, Chain: nc, Exprs: rl.exprs, UserData: []byte(rl.id)})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("firewall: apply ruleset: %w", err)
	}
	if err := verify(conn, t, chains); err != nil {
		return fmt.Errorf("firewall: ruleset read back differs from the one applied: %w", err)
	}
	return nil
}

// sameChains reports whether the kernel's table has exactly the base chains
// (name, hook, type, priority) that want has.
func sameChains(conn *nftables.Conn, want []chain) (bool, error) {
	got, err := tableChains(conn)
	if err != nil {
		return false, err
	}
	if len(got) != len(want) {
		return false, nil
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(c *nftables.Chain) bool { return c.Name == w.name })
		if i < 0 {
			return false, nil
		}
		c := got[i]
		if c.Hooknum == nil || *c.Hooknum != *w.hook || c.Type != w.typ || c.Priority == nil || *c.Priority != *w.prio {
			return false, nil
		}
	}
	return true, nil
}

func tableChains(conn *nftables.Conn) ([]*nftables.Chain, error) {
	all, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("firewall: list chains: %w", err)
	}
	var got []*nftables.Chain
	for _, c := range all {
		if c.Table.Name == TableName {
			got = append(got, c)
		}
	}
	return got, nil
}

// verify compares the kernel's table with the generated chains: chain names,
// hooks and policies, and each chain's rules in order, by id and by number
// of expressions (the library cannot decode "rt" expressions; they are not
// counted).
func verify(conn *nftables.Conn, t *nftables.Table, want []chain) error {
	got, err := tableChains(conn)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d chains, want %d", len(got), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(c *nftables.Chain) bool { return c.Name == w.name })
		if i < 0 {
			return fmt.Errorf("chain %s missing", w.name)
		}
		c := got[i]
		if c.Hooknum == nil || *c.Hooknum != *w.hook || c.Policy == nil || *c.Policy != w.policy || c.Type != w.typ {
			return fmt.Errorf("chain %s: hook, type or policy differs", w.name)
		}
		rules, err := conn.GetRules(t, c)
		if err != nil {
			return fmt.Errorf("chain %s: get rules: %w", w.name, err)
		}
		if len(rules) != len(w.rules) {
			return fmt.Errorf("chain %s: %d rules, want %d", w.name, len(rules), len(w.rules))
		}
		for j, rl := range rules {
			if string(rl.UserData) != w.rules[j].id {
				return fmt.Errorf("chain %s rule %d is %q, want %q", w.name, j, rl.UserData, w.rules[j].id)
			}
			if got, want := len(rl.Exprs), decodable(w.rules[j].exprs); got != want {
				return fmt.Errorf("chain %s rule %s: %d expressions, want %d", w.name, w.rules[j].id, got, want)
			}
		}
	}
	return nil
}

func decodable(es []expr.Any) int {
	n := 0
	for _, e := range es {
		if _, ok := e.(*expr.Rt); !ok {
			n++
		}
	}
	return n
}

func (Spec) table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}
