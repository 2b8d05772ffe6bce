// Package supervise runs the appliance services in order, restarts the ones
// that fail with exponential backoff, keeps a failing service from affecting
// the others, stops them in reverse order, and tells init whether supervision
// is healthy enough to keep petting the hardware watchdog.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Service is one long-running appliance service. Run returns when ctx ends
// (its error is then ignored) or when the service fails.
type Service struct {
	Name string
	Run  func(ctx context.Context) error
	// Critical services make supervision unhealthy, and so let the hardware
	// watchdog reset the machine, when they stay down longer than
	// Options.DownGrace. A reboot may fix what a restart cannot, and on a
	// fresh image it hands the decision to A/B fallback.
	Critical bool
}

// Options tune restarts and health. Zero values take the defaults.
type Options struct {
	MinBackoff  time.Duration // first restart delay, default 250ms
	MaxBackoff  time.Duration // cap, default 30s
	StableAfter time.Duration // a run this long resets the backoff, default 10s
	StopTimeout time.Duration // per service when stopping, default 10s
	DownGrace   time.Duration // 0: a down service never makes supervision unhealthy
	Heartbeat   time.Duration // health bookkeeping period, default 1s
	Log         *slog.Logger
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinBackoff, 250*time.Millisecond)
	def(&o.MaxBackoff, 30*time.Second)
	def(&o.StableAfter, 10*time.Second)
	def(&o.StopTimeout, 10*time.Second)
	def(&o.Heartbeat, time.Second)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Supervisor runs a fixed, ordered list of services.
type Supervisor struct {
	opts  Options
	units []*unit

	mu       sync.Mutex
	lastBeat time.Time
}

// New returns a supervisor for services, started in the given order.
func New(opts Options, services ...Service) *Supervisor {
	opts.defaults()
	s := &Supervisor{opts: opts}
	for _, svc := range services {
		s.units = append(s.units, &unit{svc: svc, restart: make(chan struct{}, 1), done: make(chan struct{})})
	}
	return s
}

// Run starts the services in order and supervises them until ctx ends, then
// stops them in reverse order, so that e.g. the tunnel is down before the
// firewall and the network it relies on. It returns when all have stopped or
// timed out.
func (s *Supervisor) Run(ctx context.Context) error {
	s.beat()
	for _, u := range s.units {
		// Each service gets its own context, cancelled only when its turn
		// to stop comes.
		uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		u.cancel = cancel
		go s.loop(uctx, u)
	}
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.lastBeat = time.Time{} // a stopping supervisor is not healthy
			s.mu.Unlock()
			return s.stop()
		case <-t.C:
			s.beat()
		}
	}
}

func (s *Supervisor) beat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastBeat = time.Now()
}

func (s *Supervisor) stop() error {
	var errs []error
	for i := len(s.units) - 1; i >= 0; i-- {
		u := s.units[i]
		u.cancel()
		select {
		case <-u.done:
		case <-time.After(s.opts.StopTimeout):
			errs = append(errs, fmt.Errorf("supervise: %s did not stop within %v", u.svc.Name, s.opts.StopTimeout))
			s.opts.Log.Error("service did not stop", "service", u.svc.Name)
		}
	}
	return errors.Join(errs...)
}

// Restart stops and starts the named services at once, skipping any backoff,
// in the supervisor's order; used to apply a new config.
func (s *Supervisor) Restart(names ...string) {
	for _, u := range s.units {
		for _, n := range names {
			if u.svc.Name == n {
				select {
				case u.restart <- struct{}{}:
				default: // a restart is already pending
				}
			}
		}
	}
}

// runOnce runs the service, turning a panic into an error so that a bug in
// one service cannot take PID 1 and all other services down with it.
func runOnce(ctx context.Context, svc Service) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return svc.Run(ctx)
}

// loop runs one service until ctx ends, restarting it after failures.
func (s *Supervisor) loop(ctx context.Context, u *unit) {
	defer close(u.done)
	backoff := s.opts.MinBackoff
	for {
		runCtx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		start := time.Now()
		s.set(u, func(st *State) { st.State, st.Since = Running, start })
		go func() { errc <- runOnce(runCtx, u.svc) }()
		var err error
		requested := false
		select {
		case err = <-errc:
		case <-u.restart:
			requested = true
			cancel()
			err = <-errc
		}
		cancel()
		if ctx.Err() != nil {
			s.set(u, func(st *State) { st.State, st.Since = Stopped, time.Now() })
			return
		}
		if requested {
			s.opts.Log.Info("service restart requested", "service", u.svc.Name)
			backoff = s.opts.MinBackoff
			continue
		}
		if err == nil {
			err = errors.New("exited")
		}
		if time.Since(start) >= s.opts.StableAfter {
			backoff = s.opts.MinBackoff
		}
		s.set(u, func(st *State) {
			st.State, st.Since, st.LastError = Backoff, time.Now(), err.Error()
			st.Restarts++
			if st.DownSince.IsZero() {
				st.DownSince = start
			}
		})
		s.opts.Log.Error("service failed", "service", u.svc.Name, "err", err, "restart_in", backoff)
		select {
		case <-ctx.Done():
			s.set(u, func(st *State) { st.State, st.Since = Stopped, time.Now() })
			return
		case <-time.After(backoff):
		case <-u.restart:
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}
