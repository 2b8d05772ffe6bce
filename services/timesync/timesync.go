// Package timesync sets the clock from SNTP servers. The appliance has no
// battery-backed clock guarantee, and certificates and logs need the right
// time, but nothing may hang on it: without an answer the appliance keeps
// running on whatever clock it has and keeps asking.
package timesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"
)

// Status is what the status page shows.
type Status struct {
	Synced    bool          `json:"synced"`
	Server    string        `json:"server,omitempty"`
	Offset    time.Duration `json:"offset_ns"`
	At        time.Time     `json:"at,omitzero"`
	LastError string        `json:"last_error,omitempty"`
}

// Syncer keeps the clock in step with the configured servers.
type Syncer struct {
	servers []string
	log     *slog.Logger
	// now and set are the system clock; tests replace them.
	now     func() time.Time
	set     func(time.Time) error
	timeout time.Duration
	poll    time.Duration // between successful syncs
	retry   time.Duration // first retry after failure, doubling

	synced chan struct{}
	once   sync.Once

	mu     sync.Mutex
	status Status
}

// New returns a syncer for servers ("host" or "host:port").
func New(servers []string, log *slog.Logger) *Syncer {
	return &Syncer{
		servers: servers,
		log:     log,
		now:     time.Now,
		set:     setClock,
		timeout: 3 * time.Second,
		poll:    15 * time.Minute,
		retry:   2 * time.Second,
		synced:  make(chan struct{}),
	}
}

// stepThreshold is the offset below which the clock is left alone: SNTP
// gives no better accuracy than that, and stepping backwards needlessly
// confuses timers.
const stepThreshold = 500 * time.Millisecond

// Run synchronises now and then every poll interval until ctx ends. It
// never fails: an unreachable server is logged and retried.
func (s *Syncer) Run(ctx context.Context) error {
	if len(s.servers) == 0 {
		s.log.Info("time: no ntp servers configured")
		<-ctx.Done()
		return nil
	}
	wait := s.retry
	for {
		err := s.syncOnce()
		next := s.poll
		if err != nil {
			s.log.Warn("time: sync failed", "err", err, "retry_in", wait)
			next, wait = wait, min(wait*2, s.poll)
		} else {
			wait = s.retry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

func (s *Syncer) syncOnce() error {
	var errs []error
	for _, srv := range s.servers {
		resp, err := ntp.QueryWithOptions(srv, ntp.QueryOptions{Timeout: s.timeout, GetSystemTime: s.now})
		if err == nil {
			err = resp.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", srv, err))
			continue
		}
		if abs(resp.ClockOffset) > stepThreshold {
			t := s.now().Add(resp.ClockOffset)
			if err := s.set(t); err != nil {
				errs = append(errs, fmt.Errorf("set clock: %w", err))
				break
			}
			s.log.Info("time: clock stepped", "server", srv, "offset", resp.ClockOffset)
		}
		s.mu.Lock()
		s.status = Status{Synced: true, Server: srv, Offset: resp.ClockOffset, At: s.now()}
		s.mu.Unlock()
		s.once.Do(func() { close(s.synced) })
		return nil
	}
	err := errors.Join(errs...)
	s.mu.Lock()
	s.status.LastError = err.Error()
	s.mu.Unlock()
	return err
}

// WaitSynced waits until the first sync or at most max, for services that
// are better off with the right time but must start regardless. It reports
// whether the clock was synchronised.
func (s *Syncer) WaitSynced(ctx context.Context, max time.Duration) bool {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-s.synced:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// Status returns the latest sync result.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func setClock(t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	return unix.Settimeofday(&tv)
}
