package appliance

import (
	"context"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/services/timesync"
)

// clockHolder hands the current time syncer (replaced on config reload) to
// the services that wait for it and to the status page.
type clockHolder struct {
	mu sync.Mutex
	s  *timesync.Syncer
	ch chan struct{} // closed when the first syncer is set
}

func newClockHolder() *clockHolder { return &clockHolder{ch: make(chan struct{})} }

func (c *clockHolder) set(s *timesync.Syncer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil {
		close(c.ch)
	}
	c.s = s
}

func (c *clockHolder) get() *timesync.Syncer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

func (c *clockHolder) status() timesync.Status {
	if s := c.get(); s != nil {
		return s.Status()
	}
	return timesync.Status{}
}

func (c *clockHolder) waitSynced(ctx context.Context, max time.Duration) bool {
	deadline := time.Now().Add(max)
	select {
	case <-c.ch:
	case <-ctx.Done():
		return false
	case <-time.After(max):
		return false
	}
	return c.get().WaitSynced(ctx, time.Until(deadline))
}
