package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// charon is one running charon process.
type charon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	err    error         // cmd.Wait's result, valid after exited
}

// startCharon launches charon chrooted into root inside the edge's namespace.
// It does not fork, and `ip netns exec` and chroot both exec, so the process
// we start is charon itself.
func (e *Edge) startCharon() (*charon, error) {
	for _, stale := range []string{"charon.pid", "charon.vici", "charon.ctl"} {
		_ = os.Remove(filepath.Join(e.inst.root, "run", stale))
	}
	logf, err := os.OpenFile(e.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("edge: open log: %w", err)
	}
	defer logf.Close() // the child holds its own copy of the descriptor
	// Not bound to a caller's context: charon outlives Start and ends only
	// through Stop or StopCharon.
	cmd := e.opts.NS.Command(context.Background(), "chroot", e.inst.root, "/usr/lib/ipsec/charon")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary that dies (timeout panic, SIGKILL) takes its
	// charons with it instead of leaving them in a deleted namespace. The
	// kernel sends it when the forking OS *thread* exits, and Go discards
	// threads (a goroutine that ends while locked to one, e.g. after
	// netns.NS.Do). So charon is forked and waited for by one goroutine
	// locked to its thread for charon's whole life: the thread ends only
	// when charon has.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &charon{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("edge: start charon in %s: %w", e.opts.NS.Name, err)
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// waitReady polls the vici socket until charon answers.
func (e *Edge) waitReady(ctx context.Context, c *charon) error {
	var lastErr error
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("edge: charon exited during startup: %v\n%s", c.err, tail(e.readLog(), 20))
		case <-ctx.Done():
			return fmt.Errorf("edge: charon not answering swanctl --stats: %w (last: %v)\n%s", ctx.Err(), lastErr, tail(e.readLog(), 20))
		default:
		}
		_, lastErr = e.Swanctl(ctx, "--stats")
		if lastErr == nil {
			return nil
		}
		select {
		case <-c.exited:
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopProcess ends charon: optionally deleting the IKE SAs first (the peer receives
// DELETE, as when an operator stops strongSwan), then TERM, then KILL.
func (e *Edge) stopProcess(ctx context.Context, c *charon, graceful bool) error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	if graceful {
		// --force with a timeout: do not wait minutes for a dead peer to
		// acknowledge the DELETE. Errors (no SA to terminate) are expected.
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = e.Swanctl(tctx, "--terminate", "--ike", e.opts.Name, "--force", "--timeout", "1")
		cancel()
	}
	pid := c.cmd.Process.Pid
	sig := syscall.SIGTERM
	if !graceful {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(pid, sig)
	select {
	case <-c.exited:
		return nil
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-c.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("edge: charon pid %d survived SIGKILL", pid)
	}
}

// Swanctl runs swanctl against this edge's charon and returns its output.
// It runs chrooted, outside the network namespace: vici is a Unix socket in
// the root's file system and needs no network.
func (e *Edge) Swanctl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "chroot", append([]string{e.inst.root, "swanctl"}, args...)...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return string(out), fmt.Errorf("edge: swanctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
