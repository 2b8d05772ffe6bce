// Package nstest creates the network namespaces of the services' tests.
//
// A test binary that uses netns.Do must keep the main thread for itself:
// Do leaves its thread in a foreign namespace, and were that the main
// thread, /proc/<pid>/ns/net would name the namespace and netns.Close would
// kill the test binary as a process left in it. Call LockMainThread first
// thing in TestMain.
package nstest

import (
	"context"
	"runtime"
	"testing"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// LockMainThread keeps every netns.Do off the main thread. Call it from
// TestMain, which runs on the main thread.
func LockMainThread() { runtime.LockOSThread() }

// New creates one namespace per prefix, all removed when the test ends.
func New(t *testing.T, prefixes ...string) []*netns.NS {
	t.Helper()
	out := make([]*netns.NS, len(prefixes))
	for i, p := range prefixes {
		ns, err := netns.New(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		out[i] = ns
	}
	return out
}
