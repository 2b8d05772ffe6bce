package agent

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// memBoot is an in-memory BootControl that records every call.
type memBoot struct {
	mu      sync.Mutex
	calls   []string // "Ensure", "SetNext B", "ClearNext", "Commit B"
	next    string
	order   []string
	failSet error // SetNext fails with it
}

func newMemBoot() *memBoot { return &memBoot{order: []string{"A", "B"}} }

func (b *memBoot) record(c string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, c)
}

func (b *memBoot) Ensure() (map[string]uint16, error) {
	b.record("Ensure")
	return map[string]uint16{"A": 1, "B": 2}, nil
}

func (b *memBoot) SetNext(slot string) error {
	b.record("SetNext " + slot)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failSet != nil {
		return b.failSet
	}
	b.next = slot
	return nil
}

func (b *memBoot) ClearNext() error {
	b.record("ClearNext")
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next = ""
	return nil
}

func (b *memBoot) Commit(slot string) error {
	b.record("Commit " + slot)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.order = []string{slot}
	for _, s := range []string{"A", "B"} {
		if s != slot {
			b.order = append(b.order, s)
		}
	}
	return nil
}

// count is how many calls began with prefix ("SetNext", "Commit", ...).
func (b *memBoot) count(prefix string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.calls {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

// boot simulates the firmware choosing a slot: BootNext once, else BootOrder[0].
func (b *memBoot) boot() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next != "" {
		s := b.next
		b.next = ""
		return s
	}
	return b.order[0]
}

// memDisk is an in-memory SlotIO: one byte slice per slot.
type memDisk struct {
	mu     sync.Mutex
	slots  map[string][]byte
	opened []string
	syncs  int
}

func newMemDisk(size int) *memDisk {
	return &memDisk{slots: map[string][]byte{"A": make([]byte, size), "B": make([]byte, size)}}
}

func (d *memDisk) OpenSlot(slot string) (Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.slots[slot]; !ok {
		return nil, fmt.Errorf("no slot %q", slot)
	}
	d.opened = append(d.opened, slot)
	return &memDevice{d: d, slot: slot}, nil
}

func (d *memDisk) bytes(slot string, n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.slots[slot][:n]...)
}

type memDevice struct {
	d    *memDisk
	slot string
}

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	s := m.d.slots[m.slot]
	if off >= int64(len(s)) {
		return 0, io.EOF
	}
	n := copy(p, s[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	s := m.d.slots[m.slot]
	if off+int64(len(p)) > int64(len(s)) {
		return 0, errors.New("write past the end of the slot")
	}
	return copy(s[off:], p), nil
}

func (m *memDevice) Sync() error {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	m.d.syncs++
	return nil
}

func (m *memDevice) Size() int64 {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	return int64(len(m.d.slots[m.slot]))
}

func (m *memDevice) Close() error { return nil }

// fakeClock is a manual clock: After fires when Set moves the time past
// the deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Set moves the clock to t and fires every timer due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.c <- t
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

func (c *fakeClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// pending is how many timers wait for a time after now.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// waitFor polls cond (in real time) until it holds or 20s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
