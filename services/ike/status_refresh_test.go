package ike

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// countingInstaller reports counters that grow on every read, like an SA
// carrying traffic.
type countingInstaller struct {
	*xfrm.Memory
	reads atomic.Uint64
}

func (c *countingInstaller) Stats(context.Context, xfrm.SA) (xfrm.Counters, error) {
	n := c.reads.Add(1)
	return xfrm.Counters{Bytes: 1000 * n, Packets: n}, nil
}

// TestStatusShowsTraffic proves an established tunnel's status follows the
// kernel's byte counters without waiting for an IKE event.
func TestStatusShowsTraffic(t *testing.T) {
	r := startResponder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, mem := testOptions(t, r)
	inst := &countingInstaller{Memory: mem}
	opt.Installer = inst
	opt.StatusInterval = 20 * time.Millisecond
	s := newSession(t, tunnelConfig(r), opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "tunnel up", func() bool { return s.Status().State == "established" })
	bytesIn := func() uint64 {
		var sum uint64
		for _, c := range s.Status().Children {
			sum += c.BytesIn
		}
		return sum
	}
	first := bytesIn()
	waitFor(t, "byte counters to move without an IKE exchange", func() bool { return bytesIn() > first })
	if st := s.Status(); st.State != "established" {
		t.Fatalf("state %s after counter refreshes", st.State)
	}
}
