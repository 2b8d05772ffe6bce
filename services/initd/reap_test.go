package initd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startReaper makes the test process a child subreaper, so that orphans come
// to it as they come to PID 1, and runs the reaper until the test ends.
func startReaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become a subreaper: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reap(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// TestReaperLeavesOwnChildren runs commands while the reaper runs: every
// exit status must reach its own Wait. A wait4(-1) reaper steals some.
func TestReaperLeavesOwnChildren(t *testing.T) {
	startReaper(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4*25)
	for range 4 {
		wg.Go(func() {
			for range 25 {
				err := exec.Command("sh", "-c", "exit 7").Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 7 {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("want exit status 7, got %v", err)
	}
}

// TestReaperCollectsOrphans leaves a grandchild behind whose parent has
// exited: it is re-parented to us and must not stay a zombie.
func TestReaperCollectsOrphans(t *testing.T) {
	startReaper(t)
	out, err := exec.Command("sh", "-c", "sleep 0.2 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orphan pid %q: %v", out, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d not reaped: %s", pid, stat)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
