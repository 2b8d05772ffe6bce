package edge

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// needRoot skips unless the test can create namespaces and mounts, and in
// -short mode, since every test here builds or runs a real strongSwan.
func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real strongSwan edge: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces, mounts and chroot")
	}
}

func testCache(t *testing.T) *Cache {
	t.Helper()
	c, err := NewCache(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newNS(t *testing.T, ctx context.Context, prefix string) *netns.NS {
	t.Helper()
	n, err := netns.New(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startEdge starts an edge that is stopped when the test ends, dumping its
// log if the test failed.
func startEdge(t *testing.T, ctx context.Context, o Options) *Edge {
	t.Helper()
	e, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start %s: %v", o.Name, err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("Stop %s: %v", e.Name(), err)
		}
		if t.Failed() {
			t.Logf("charon log of %s:\n%s", e.Name(), e.Log())
		}
	})
	return e
}

var packetsRe = regexp.MustCompile(`(?m)^\s+(in|out)\s+\S+.*?(\d+) bytes,\s+(\d+) packets`)

// childPackets sums the in and out packet counters of the CHILD_SAs in a
// `swanctl --list-sas` output.
func childPackets(listSAs string) (in, out int) {
	for _, m := range packetsRe.FindAllStringSubmatch(listSAs, -1) {
		n, _ := strconv.Atoi(m[3])
		if m[1] == "in" {
			in += n
		} else {
			out += n
		}
	}
	return in, out
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}
