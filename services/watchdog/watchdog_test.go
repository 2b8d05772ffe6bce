package watchdog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeDog struct {
	mu   sync.Mutex
	pets int
}

func (f *fakeDog) KeepAlive() error {
	f.mu.Lock()
	f.pets++
	f.mu.Unlock()
	return nil
}

func (f *fakeDog) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pets
}

func TestPetsOnlyWhileHealthy(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	dog := &fakeDog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Pet(ctx, slog.New(slog.DiscardHandler), dog, healthy.Load, 5*time.Millisecond); close(done) }()

	time.Sleep(60 * time.Millisecond)
	if n := dog.count(); n < 5 {
		t.Fatalf("%d pets while healthy", n)
	}
	healthy.Store(false)
	time.Sleep(15 * time.Millisecond) // let a tick in flight finish
	n := dog.count()
	time.Sleep(60 * time.Millisecond)
	if got := dog.count(); got != n {
		t.Fatalf("petted %d times while unhealthy", got-n)
	}
	healthy.Store(true)
	time.Sleep(60 * time.Millisecond)
	if dog.count() <= n {
		t.Fatal("petting did not resume")
	}
	cancel()
	<-done
	n = dog.count()
	time.Sleep(20 * time.Millisecond)
	if dog.count() != n {
		t.Fatal("petting after stop")
	}
}
