package edge

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func alive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func netnsExists(name string) bool {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// TestStopLeavesNothing checks that Stop and Site.Close remove every
// process, mount, directory and namespace, and that Stop is idempotent.
func TestStopLeavesNothing(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t, 10*time.Minute)
	site, err := NewEdgeSite(ctx, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	e, err := Start(ctx, Options{NS: site.GW, Cache: testCache(t), LocalAddrs: EdgeWANAddr, Auth: Auth{PSK: "stop"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	pid, dir := e.PID(), e.inst.dir
	// ip netns exec and chroot exec rather than fork, so the pid we signal
	// is charon's own.
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "charon" {
		t.Fatalf("pid %d is %q (%v), want charon", pid, comm, err)
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 2 { // the overlay and /dev/net/tun
		t.Fatalf("expected overlay and tun mounts under %s, got %v", dir, mounts)
	}

	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("charon %d still alive after Stop", pid)
	}
	if m, err := mountsUnder(dir); err != nil || len(m) > 0 {
		t.Errorf("still mounted after Stop: %v %v", m, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("instance dir %s not removed: %v", dir, err)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if !strings.Contains(e.Log(), "SIGTERM received") {
		t.Errorf("Log after Stop lost the shutdown:\n%s", e.Log())
	}
	if _, err := e.ListSAs(ctx); err == nil {
		t.Error("ListSAs after Stop succeeded")
	}

	names := []string{site.GW.Name, site.Host.Name}
	if err := site.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if netnsExists(n) {
			t.Errorf("namespace %s still exists after Close", n)
		}
	}
	if err := site.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestStartFailureCleansUp gives charon a proposal it rejects: Start must
// fail, naming the problem, and leave nothing behind.
func TestStartFailureCleansUp(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t, 10*time.Minute)
	ns := newNS(t, ctx, "fail")
	// Count only this test's instance dirs: other edges (a test beside
	// this one, `make run`) create and remove theirs in the system temp
	// dir at any time. Start makes its instance dir under $TMPDIR.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	before := instanceDirs(t, tmp)
	_, err := Start(ctx, Options{NS: ns, Cache: testCache(t), Proposals: []string{"aes256gcm16-bogus"}, Auth: Auth{PSK: "x"}})
	if err == nil {
		t.Fatal("Start with a bogus proposal succeeded")
	}
	// swanctl names the setting, charon's log (quoted in the error) the value.
	if !strings.Contains(err.Error(), "proposals") || !strings.Contains(err.Error(), "'bogus' not recognized") {
		t.Errorf("error does not name the bad setting and value: %v", err)
	}
	if out, _ := exec.Command("ip", "netns", "pids", ns.Name).Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("processes left in %s: %s", ns.Name, out)
	}
	if after := instanceDirs(t, tmp); len(after) != len(before) {
		t.Errorf("instance dirs before %v, after %v", before, after)
	}
}

// instanceDirs lists the edge instance dirs in dir.
func instanceDirs(t *testing.T, dir string) []string {
	t.Helper()
	dirs, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if strings.HasPrefix(d.Name(), "pqb-edge-") {
			out = append(out, d.Name())
		}
	}
	return out
}
