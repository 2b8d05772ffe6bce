package xfrm

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is an Installer that only records: the -no-install mode and tests.
// It behaves like Netlink where the session can tell: it keeps its own copy
// of each key (the kernel does), refuses a duplicate SPI, and updates rather
// than refuses a policy for selectors already present (XfrmPolicyUpdate), so
// a restarted session over left-over policies is modelled faithfully.
type Memory struct {
	mu       sync.Mutex
	sas      map[uint32]SA
	policies []Policy
}

// NewMemory returns an empty recorder.
func NewMemory() *Memory { return &Memory{sas: map[uint32]SA{}} }

func (m *Memory) AddSA(_ context.Context, sa SA) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.sas[sa.SPI]; dup {
		return fmt.Errorf("add %v: SPI exists", sa)
	}
	sa.Key = bytes.Clone(sa.Key)
	m.sas[sa.SPI] = sa
	return nil
}

func (m *Memory) DelSA(_ context.Context, sa SA) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sas[sa.SPI]; !ok {
		return fmt.Errorf("delete %v: no such SA", sa)
	}
	delete(m.sas, sa.SPI)
	return nil
}

func (m *Memory) AddPolicy(_ context.Context, p Policy) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The kernel keys a policy by its selectors (and direction): a second
	// one for the same subnets replaces the first.
	if i := slices.IndexFunc(m.policies, func(q Policy) bool { return q.Local == p.Local && q.Remote == p.Remote }); i >= 0 {
		m.policies[i] = p
		return nil
	}
	m.policies = append(m.policies, p)
	return nil
}

func (m *Memory) DelPolicy(_ context.Context, p Policy) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.Index(m.policies, p)
	if i < 0 {
		return fmt.Errorf("policy %v->%v not installed", p.Local, p.Remote)
	}
	m.policies = slices.Delete(m.policies, i, i+1)
	return nil
}

func (m *Memory) Stats(context.Context, SA) (Counters, error) { return Counters{}, nil }

// SAs returns the recorded SAs.
func (m *Memory) SAs() []SA {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SA, 0, len(m.sas))
	for _, sa := range m.sas {
		out = append(out, sa)
	}
	slices.SortFunc(out, func(a, b SA) int { return int(int64(a.SPI) - int64(b.SPI)) })
	return out
}

// Policies returns the recorded policies.
func (m *Memory) Policies() []Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.policies)
}
