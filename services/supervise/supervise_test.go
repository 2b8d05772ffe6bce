package supervise

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder notes when each service starts and stops.
type recorder struct {
	mu     sync.Mutex
	starts map[string][]time.Time
	stops  []string
}

func (r *recorder) started(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starts == nil {
		r.starts = map[string][]time.Time{}
	}
	r.starts[name] = append(r.starts[name], time.Now())
}

func (r *recorder) get(name string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.starts[name])
}

// steady runs until cancelled.
func (r *recorder) steady(name string) Service {
	return Service{Name: name, Critical: true, Run: func(ctx context.Context) error {
		r.started(name)
		<-ctx.Done()
		r.mu.Lock()
		r.stops = append(r.stops, name)
		r.mu.Unlock()
		return nil
	}}
}

func (r *recorder) crashing(name string, critical bool) Service {
	return Service{Name: name, Critical: critical, Run: func(ctx context.Context) error {
		r.started(name)
		return errors.New("boom")
	}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCrashLoopBacksOffOthersStayUp(t *testing.T) {
	var r recorder
	s := New(Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 160 * time.Millisecond, Heartbeat: 10 * time.Millisecond},
		r.steady("network"), r.steady("firewall"), r.crashing("tunnel", false), r.steady("status"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "7 tunnel starts", func() bool { return len(r.get("tunnel")) >= 7 })

	starts := r.get("tunnel")
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]))
	}
	// Backoff doubles from 20ms to the 160ms cap: 20, 40, 80, 160, 160, ...
	want := []time.Duration{20, 40, 80, 160, 160, 160}
	for i, w := range want {
		w *= time.Millisecond
		if gaps[i] < w || gaps[i] > w+100*time.Millisecond {
			t.Errorf("gap %d = %v, want about %v (all gaps %v)", i, gaps[i], w, gaps)
		}
	}
	for _, n := range []string{"network", "firewall", "status"} {
		if got := len(r.get(n)); got != 1 {
			t.Errorf("%s started %d times, want 1: a crash-looping service disturbed it", n, got)
		}
	}
	st := s.States()
	if st[0].State != Running || st[2].Restarts < 6 || st[2].LastError != "boom" {
		t.Errorf("states: %+v", st)
	}
	if !s.Healthy() {
		t.Error("unhealthy although the crashing service is not critical")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Stopped in reverse start order.
	if want := []string{"status", "firewall", "network"}; !slices.Equal(r.stops, want) {
		t.Errorf("stop order %v, want %v", r.stops, want)
	}
	if s.Healthy() {
		t.Error("healthy after stop")
	}
}

func TestPanicIsContained(t *testing.T) {
	var r recorder
	panicky := Service{Name: "panicky", Run: func(ctx context.Context) error {
		r.started("panicky")
		var m map[string]int
		m["x"]++ // nil map write panics
		return nil
	}}
	s := New(Options{MinBackoff: time.Millisecond, Heartbeat: 10 * time.Millisecond}, r.steady("network"), panicky)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "3 panics", func() bool { return len(r.get("panicky")) >= 3 })
	if len(r.get("network")) != 1 {
		t.Error("network restarted")
	}
	if st := s.States()[1]; st.Restarts < 2 || st.LastError == "" {
		t.Errorf("state %+v", st)
	}
}

func TestCriticalDownMakesUnhealthy(t *testing.T) {
	var r recorder
	s := New(Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, DownGrace: 200 * time.Millisecond, Heartbeat: 10 * time.Millisecond},
		r.steady("network"), r.crashing("firewall", true))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "first beat", func() bool { return len(r.get("firewall")) > 0 })
	if !s.Healthy() {
		t.Fatal("unhealthy within the grace period")
	}
	waitFor(t, "unhealthy", func() bool { return !s.Healthy() })
	if len(r.get("network")) != 1 {
		t.Error("network restarted")
	}
}

func TestRecoveredServiceIsHealthyAgain(t *testing.T) {
	var (
		r     recorder
		fails = 3
		mu    sync.Mutex
	)
	flaky := Service{Name: "flaky", Critical: true, Run: func(ctx context.Context) error {
		r.started("flaky")
		mu.Lock()
		fails--
		f := fails
		mu.Unlock()
		if f >= 0 {
			return errors.New("not yet")
		}
		<-ctx.Done()
		return nil
	}}
	s := New(Options{MinBackoff: 5 * time.Millisecond, StableAfter: 50 * time.Millisecond, DownGrace: 20 * time.Millisecond, Heartbeat: 10 * time.Millisecond}, flaky)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "first start", func() bool { return len(r.get("flaky")) > 0 })
	waitFor(t, "unhealthy", func() bool { return !s.Healthy() })
	waitFor(t, "healthy again", func() bool { return s.Healthy() })
	if n := len(r.get("flaky")); n != 4 {
		t.Errorf("%d starts, want 4", n)
	}
}

func TestRestartRequested(t *testing.T) {
	var r recorder
	s := New(Options{Heartbeat: 10 * time.Millisecond}, r.steady("network"), r.steady("firewall"), r.steady("tunnel"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "start", func() bool { return len(r.get("tunnel")) == 1 })
	s.Restart("firewall", "tunnel")
	waitFor(t, "restart", func() bool { return len(r.get("firewall")) == 2 && len(r.get("tunnel")) == 2 })
	if len(r.get("network")) != 1 {
		t.Error("network restarted")
	}
	if st := s.States()[1]; st.Restarts != 0 || st.State != Running {
		t.Errorf("a requested restart counted as a failure: %+v", st)
	}
}

func TestStopTimeout(t *testing.T) {
	stuck := Service{Name: "stuck", Run: func(ctx context.Context) error { select {} }}
	s := New(Options{StopTimeout: 50 * time.Millisecond, Heartbeat: 10 * time.Millisecond}, stuck)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error for a service that ignored its context")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run hung on a stuck service")
	}
}
