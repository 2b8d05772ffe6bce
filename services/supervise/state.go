package supervise

import (
	"sync"
	"time"
)

// Service states.
const (
	Running = "running"
	Backoff = "backoff" // failed, waiting to be restarted
	Stopped = "stopped"
)

// State is what the status page shows about one service.
type State struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	// DownSince is when the current run of failures began; zero once the
	// service has run for StableAfter.
	DownSince time.Time `json:"down_since,omitzero"`
}

type unit struct {
	svc     Service
	cancel  func()
	restart chan struct{}
	done    chan struct{}

	mu    sync.Mutex
	state State
}

func (s *Supervisor) set(u *unit, f func(*State)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f(&u.state)
}

// States returns every service's state, in start order.
func (s *Supervisor) States() []State {
	out := make([]State, len(s.units))
	for i, u := range s.units {
		u.mu.Lock()
		out[i] = u.state
		u.mu.Unlock()
		out[i].Name = u.svc.Name
		if out[i].State == "" {
			out[i].State = Stopped
		}
	}
	return out
}

// Healthy reports whether init should keep petting the watchdog: the
// supervisor is running and making progress, and no critical service has
// been down longer than the grace period.
func (s *Supervisor) Healthy() bool {
	now := time.Now()
	s.mu.Lock()
	beat := s.lastBeat
	s.mu.Unlock()
	if beat.IsZero() || now.Sub(beat) > 3*s.opts.Heartbeat {
		return false
	}
	healthy := true
	for _, u := range s.units {
		u.mu.Lock()
		st := &u.state
		// A service that has stayed up long enough has recovered.
		if st.State == Running && !st.DownSince.IsZero() && now.Sub(st.Since) >= s.opts.StableAfter {
			st.DownSince = time.Time{}
		}
		if u.svc.Critical && s.opts.DownGrace > 0 && !st.DownSince.IsZero() && now.Sub(st.DownSince) > s.opts.DownGrace {
			healthy = false
		}
		u.mu.Unlock()
	}
	return healthy
}
