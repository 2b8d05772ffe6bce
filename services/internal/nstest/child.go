package nstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// A test runs a service in a namespace as a child: the test binary itself,
// started with a role in its environment, which Main sees and runs instead
// of the tests. Every thread of the service is then in the namespace, as on
// the appliance.
const roleEnv = "PQB_NSTEST_ROLE"

// Main is TestMain for a package whose tests start children: it keeps
// the main thread (LockMainThread), and runs the role named in the
// environment, until SIGTERM or an interrupt, instead of the tests when
// there is one. A role's error is printed and makes the child exit 1.
// A package that only needs the main thread kept passes no roles.
func Main(m *testing.M, roles map[string]func(context.Context) error) {
	LockMainThread()
	name := os.Getenv(roleEnv)
	if name == "" {
		os.Exit(m.Run())
	}
	run, ok := roles[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "nstest: %s=%q: no such role\n", roleEnv, name)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Child is a role running in a namespace.
type Child struct {
	// Process is the child's process, for the signals a test sends it,
	// such as SIGHUP for a reload.
	Process *os.Process

	t              *testing.T
	role           string
	cmd            *exec.Cmd
	stdout, stderr buffer // read by the test while the child runs
	once           sync.Once
}

// Start runs role (one of those given to Main) in ns, with env
// ("NAME=value") added to the test's environment. The child is stopped
// when the test ends, and its stderr logged if the test failed.
func Start(t *testing.T, ns *netns.NS, role string, env ...string) *Child {
	t.Helper()
	c := &Child{t: t, role: role}
	c.cmd = ns.Command(context.Background(), os.Args[0], "-test.run=^$")
	c.cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("nstest: start %s in %s: %v", role, ns.Name, err)
	}
	c.Process = c.cmd.Process
	t.Cleanup(c.Stop)
	return c
}

// Stdout is what the child has written to its stdout so far.
func (c *Child) Stdout() string { return c.stdout.String() }

// Stderr is what the child has written to its stderr (its log) so far.
func (c *Child) Stderr() string { return c.stderr.String() }

// Stop interrupts the child (`ip netns exec` passes the signal on) and
// waits for it to end, killing it after 5 s. Stopping twice is a no-op.
func (c *Child) Stop() {
	c.once.Do(func() {
		c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
		if c.t.Failed() {
			c.t.Logf("%s log:\n%s", c.role, c.stderr.String())
		}
	})
}

// buffer collects a child's output, written by exec's copying goroutine
// while the test reads it.
type buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
