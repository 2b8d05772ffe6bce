package appliance

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/supervise"
)

// TestFaultSocketCrashesOneService crashes one of two supervised services
// through the socket: it must fail as a panic and run again, the other must
// keep running undisturbed, and an unknown name must be refused.
func TestFaultSocketCrashesOneService(t *testing.T) {
	var mu sync.Mutex
	starts := map[string]int{}
	svc := func(name string) supervise.Service {
		return supervise.Service{Name: name, Run: func(ctx context.Context) error {
			mu.Lock()
			starts[name]++
			mu.Unlock()
			<-ctx.Done()
			return nil
		}}
	}
	svcs, crash := withFaults([]supervise.Service{svc("victim"), svc("bystander")})
	sup := supervise.New(supervise.Options{MinBackoff: 10 * time.Millisecond}, svcs...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sup.Run(ctx)

	sock := filepath.Join(t.TempDir(), "fault.sock")
	go serveFaults(ctx, slog.New(slog.DiscardHandler), sock, crash)
	ask := func(name string) string {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			reply, err := askFault(ctx, sock, name)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Fatal(err)
				}
				return reply
			}
		}
	}
	if reply := ask("nosuch"); !strings.HasPrefix(reply, "error: no service") {
		t.Fatalf("unknown service: reply %q", reply)
	}
	if reply := ask("victim"); reply != "ok" {
		t.Fatalf("reply %q", reply)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := sup.States()
		mu.Lock()
		victimStarts, bystanderStarts := starts["victim"], starts["bystander"]
		mu.Unlock()
		if st[0].Restarts == 1 && st[0].State == supervise.Running && victimStarts == 2 {
			if !strings.Contains(st[0].LastError, "panic: crash injected") {
				t.Fatalf("victim's error %q, want the injected panic", st[0].LastError)
			}
			if st[1].Restarts != 0 || bystanderStarts != 1 {
				t.Fatalf("bystander disturbed: %+v, %d starts", st[1], bystanderStarts)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim not restarted once: %+v, starts %v", st, starts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
