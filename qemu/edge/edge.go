// Package edge runs real strongSwan daemons as test peers: a responder the
// appliance connects to, or an initiator for benchmarks. Each edge is a
// charon chrooted into a private overlay of a debootstrapped Debian root and
// running in a network namespace from qemu/netns. ESP goes through
// kernel-libipsec (userspace ESP over TUN), because the test kernels have no
// ESP; strongSwan then always uses UDP encapsulation on port 4500.
package edge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Edge is one strongSwan instance. Its methods are safe for concurrent use.
type Edge struct {
	opts    Options
	inst    *instance
	logPath string

	mu      sync.Mutex
	charon  *charon // nil while stopped
	closed  bool
	lastLog string // the log, kept when Stop deletes the instance
}

// startTimeout bounds Start when the caller's context has no deadline: a
// charon that does not answer within it is broken, not slow.
const startTimeout = 30 * time.Second

// Start builds (or reuses) the root, makes a private copy, writes the
// configuration, starts charon in opts.NS and loads the connection. On error
// nothing is left running or mounted. Call it from an ordinary goroutine, not
// inside netns.NS.Do (charon is killed when the thread that forked it exits).
func Start(ctx context.Context, opts Options) (_ *Edge, err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cache := o.Cache
	if cache == nil {
		if cache, err = NewCache(os.Stderr); err != nil {
			return nil, err
		}
	}
	root, err := cache.Root(ctx, o.Distro)
	if err != nil {
		return nil, err
	}
	inst, err := newInstance(ctx, root)
	if err != nil {
		return nil, err
	}
	e := &Edge{opts: o, inst: inst, logPath: filepath.Join(inst.dir, "charon.log")}
	defer func() {
		if err != nil {
			if stopErr := e.Stop(); stopErr != nil {
				err = fmt.Errorf("%w (and stop: %v)", err, stopErr)
			}
		}
	}()
	if err := writeConfig(inst.root, o); err != nil {
		return nil, err
	}
	if err := e.StartCharon(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// StartCharon starts charon (after StopCharon) and loads the configuration.
func (e *Edge) StartCharon(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("edge: StartCharon after Stop")
	}
	if e.charon != nil {
		return errors.New("edge: charon already running")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	c, err := e.startCharon()
	if err != nil {
		return err
	}
	e.charon = c
	if err := e.loadConfig(ctx, c); err != nil {
		// Leave no half-configured charon answering the peer.
		if stopErr := e.stopCharonLocked(context.Background(), false); stopErr != nil {
			err = fmt.Errorf("%w (and stop: %v)", err, stopErr)
		}
		return err
	}
	return nil
}

func (e *Edge) loadConfig(ctx context.Context, c *charon) error {
	if err := e.waitReady(ctx, c); err != nil {
		return err
	}
	out, err := e.Swanctl(ctx, "--load-all", "--noprompt")
	// Older swanctl exits 0 even when a section fails to parse or load.
	if err == nil && (strings.Contains(out, "failed") || strings.Contains(out, "error")) {
		err = fmt.Errorf("edge: swanctl --load-all: %s", strings.TrimSpace(out))
	}
	if err != nil {
		// swanctl only names the setting; charon's log names the value.
		return fmt.Errorf("%w\ncharon log:\n%s", err, tail(e.readLog(), 8))
	}
	return nil
}

// StopCharon stops charon but keeps the root, namespace and log, so that
// StartCharon can bring the same edge back. graceful deletes the IKE SAs
// first, which the peer sees as DELETE; otherwise charon is killed and the
// peer sees a silent peer (as after a crash or power loss).
func (e *Edge) StopCharon(ctx context.Context, graceful bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopCharonLocked(ctx, graceful)
}

func (e *Edge) stopCharonLocked(ctx context.Context, graceful bool) error {
	if e.charon == nil {
		return nil
	}
	err := e.stopProcess(ctx, e.charon, graceful)
	if err == nil {
		e.charon = nil
	}
	return err
}

// Restart stops charon gracefully and starts it again in the same namespace
// with the same configuration. SAs are not carried over.
func (e *Edge) Restart(ctx context.Context) error {
	if err := e.StopCharon(ctx, true); err != nil {
		return err
	}
	return e.StartCharon(ctx)
}

// Stop ends charon, unmounts and deletes the instance. It is idempotent and
// meant for defer: after it returns nil, nothing of the edge is running or
// mounted. The namespace belongs to the caller and is not closed. Log keeps
// working afterwards.
func (e *Edge) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if err := e.stopCharonLocked(ctx, true); err != nil {
		errs = append(errs, err)
	}
	if data, err := os.ReadFile(e.logPath); err == nil {
		e.lastLog = string(data)
	}
	if err := e.inst.close(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		e.closed = true
	}
	return errors.Join(errs...)
}

// Running reports whether charon is running.
func (e *Edge) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.charon == nil {
		return false
	}
	select {
	case <-e.charon.exited:
		return false
	default:
		return true
	}
}

// PID is charon's process id, 0 while stopped.
func (e *Edge) PID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.charon == nil {
		return 0
	}
	return e.charon.cmd.Process.Pid
}

// Root is the directory charon sees as /, for tests that add files.
func (e *Edge) Root() string { return e.inst.root }

// CommandIn returns a command running a program of the edge's root (iperf3,
// tcpdump, ping) chrooted into it but inside namespace ns, e.g. a host behind
// the gateway that has no root of its own.
func (e *Edge) CommandIn(ctx context.Context, ns *netns.NS, name string, args ...string) *exec.Cmd {
	return ns.Command(ctx, "chroot", append([]string{e.inst.root, name}, args...)...)
}

// Name is the swanctl connection name.
func (e *Edge) Name() string { return e.opts.Name }

// ListSAs returns `swanctl --list-sas`.
func (e *Edge) ListSAs(ctx context.Context) (string, error) {
	return e.Swanctl(ctx, "--list-sas")
}

// Initiate brings up child (and its IKE SA) and waits for the result;
// swanctl fails when either the IKE or the CHILD_SA fails.
func (e *Edge) Initiate(ctx context.Context, child string) error {
	args := []string{"--initiate", "--child", child}
	if dl, ok := ctx.Deadline(); ok {
		if s := int(time.Until(dl).Seconds()); s > 0 {
			args = append(args, "--timeout", fmt.Sprint(s))
		}
	}
	_, err := e.Swanctl(ctx, args...)
	return err
}

// Terminate deletes the IKE SAs of the connection, waiting at most a second
// for the peer's answer.
func (e *Edge) Terminate(ctx context.Context) error {
	_, err := e.Swanctl(ctx, "--terminate", "--ike", e.opts.Name, "--force", "--timeout", "1")
	return err
}

// Version returns the running daemon's `swanctl --version --daemon` line.
func (e *Edge) Version(ctx context.Context) (string, error) {
	out, err := e.Swanctl(ctx, "--version", "--daemon")
	return strings.TrimSpace(out), err
}

// Algorithms returns `swanctl --list-algs` of the running daemon.
func (e *Edge) Algorithms(ctx context.Context) (string, error) {
	return e.Swanctl(ctx, "--list-algs")
}
