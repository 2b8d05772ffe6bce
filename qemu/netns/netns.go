// Package netns creates the network namespaces, veth pairs and hosts that the
// tests and `make run` use as virtual WAN and LAN networks. Everything it
// creates is removed by Close, so a test that defers Close leaves nothing
// behind, pass or fail.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	vnetns "github.com/vishvananda/netns"
)

// NS is one named network namespace.
type NS struct {
	Name string
}

// New creates a namespace whose name starts with prefix and ends with a random
// suffix, so that parallel tests and leftover namespaces never collide. The
// loopback interface is brought up.
func New(ctx context.Context, prefix string) (*NS, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := "pqb-" + prefix + "-" + hex.EncodeToString(b[:])
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return nil, fmt.Errorf("netns: create %s: %w", name, err)
	}
	n := &NS{Name: name}
	if _, err := n.Run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Command returns a command that runs inside the namespace.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netns %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Do runs f on an OS thread switched into the namespace, for in-process
// netlink, nftables or socket work. Sockets opened inside f stay in the
// namespace after f returns.
func (n *NS) Do(f func() error) error {
	var (
		wg  sync.WaitGroup
		err error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		orig, e := vnetns.Get()
		if e != nil {
			err = fmt.Errorf("netns: current namespace: %w", e)
			return // the thread stays locked, so the runtime discards it
		}
		defer orig.Close()
		target, e := vnetns.GetFromName(n.Name)
		if e != nil {
			err = fmt.Errorf("netns %s: %w", n.Name, e)
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if e := vnetns.Set(target); e != nil {
			err = fmt.Errorf("netns %s: setns: %w", n.Name, e)
			runtime.UnlockOSThread()
			return
		}
		err = f()
		// Switch back before the thread can run anything else. The thread
		// may be the process's main thread, whose namespace is what
		// `ip netns pids` reports for the whole process; a thread that
		// cannot switch back stays locked and dies with this goroutine.
		if vnetns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	wg.Wait()
	return err
}

// Handle opens the namespace for APIs that take a namespace file descriptor
// (netlink.NewHandleAt, nftables.WithNetNSFd). The caller closes it.
func (n *NS) Handle() (vnetns.NsHandle, error) {
	return vnetns.GetFromName(n.Name)
}

// Close kills every process left in the namespace and deletes it.
func (n *NS) Close() error {
	ctx := context.Background()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			_ = exec.CommandContext(ctx, "kill", "-9", pid).Run()
		}
	}
	return run(ctx, "ip", "netns", "delete", n.Name)
}

// Veth connects namespace a (interface aName, address aAddr in CIDR form) to
// namespace b (bName, bAddr) and brings both ends up. An empty address leaves
// that end unaddressed. mtu 0 keeps the default.
func Veth(ctx context.Context, a *NS, aName, aAddr string, b *NS, bName, bAddr string, mtu int) error {
	tmpA, tmpB := tmpName(), tmpName()
	if err := run(ctx, "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
		return fmt.Errorf("netns: veth %s-%s: %w", aName, bName, err)
	}
	for _, end := range []struct {
		ns        *NS
		tmp, name string
		addr      string
	}{{a, tmpA, aName, aAddr}, {b, tmpB, bName, bAddr}} {
		if err := run(ctx, "ip", "link", "set", end.tmp, "netns", end.ns.Name, "name", end.name); err != nil {
			_ = run(ctx, "ip", "link", "del", tmpA)
			return fmt.Errorf("netns: move %s into %s: %w", end.name, end.ns.Name, err)
		}
		if mtu > 0 {
			if _, err := end.ns.Run(ctx, "ip", "link", "set", end.name, "mtu", fmt.Sprint(mtu)); err != nil {
				return err
			}
		}
		if end.addr != "" {
			if _, err := end.ns.Run(ctx, "ip", "addr", "add", end.addr, "dev", end.name); err != nil {
				return err
			}
		}
		if _, err := end.ns.Run(ctx, "ip", "link", "set", end.name, "up"); err != nil {
			return err
		}
	}
	return nil
}

func tmpName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "pqbv" + hex.EncodeToString(b[:])
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
