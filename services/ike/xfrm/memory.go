package xfrm

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is an Installer that only records: the -no-install mode and tests.
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
	if slices.Contains(m.policies, p) {
		return fmt.Errorf("policy %v->%v exists", p.Local, p.Remote)
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
