package lab

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/qemu/edge"
)

// wanMarker is written into every cleartext payload the tests send (the
// TCP stream and the pings' padding); a WAN frame containing it is a leak.
// Sixteen bytes: the most ping -p repeats.
var wanMarker = []byte("pqb-e2e-CLEARTXT")

// defaultImage is what `make image` builds; `make test` builds it first.
func defaultImage(t *testing.T) (string, *boards.Board) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	img := filepath.Join(filepath.Dir(file), "..", "..", "out", boards.Default, "disk.img")
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("%v: run `make image` first (make test does)", err)
	}
	b, err := boards.Load(boards.Default)
	if err != nil {
		t.Fatal(err)
	}
	return img, b
}

// needLab skips where the whole lab cannot run, as the edge's own tests do.
func needLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots the appliance and a real strongSwan edge: skipped with -short")
	}
	if !isRoot() {
		t.Skip("needs root for namespaces, taps and chroot")
	}
}

// startLab starts the lab on the default image (see startLabWith).
func startLab(ctx context.Context, t *testing.T, beforeBoot func(*Lab) error) *Lab {
	t.Helper()
	img, b := defaultImage(t)
	return startLabWith(ctx, t, Options{Board: b, Image: img, BeforeBoot: beforeBoot})
}

// startLabWith starts the lab with o and tears it down when the test ends,
// pass or fail, logging what explains a failure.
func startLabWith(ctx context.Context, t *testing.T, o Options) *Lab {
	t.Helper()
	o.Progress = testWriter{t}
	l, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("appliance console:\n%s", consoleTail(l, 150))
			t.Logf("charon log:\n%s", tail(l.Edge.Log(), 40))
			t.Logf("WAN DHCP log:\n%s", tail(l.DHCPLog(), 20))
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab teardown: %v", err)
		}
	})
	return l
}

// ping runs ping from the LAN client to the dc host with the marker as
// padding; it reports the output and whether every echo came back.
func ping(ctx context.Context, l *Lab, count int) (string, bool) {
	out, err := l.LAN.Run(ctx, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.3", "-W", "2", "-s", "120",
		"-p", hex.EncodeToString(wanMarker), edge.DCAddr)
	return out, err == nil && strings.Contains(out, " 0% packet loss")
}

// pingNone pings and reports whether not a single echo came back.
func pingNone(ctx context.Context, l *Lab, count int) (string, bool) {
	out, _ := l.LAN.Run(ctx, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.3", "-W", "1", "-s", "120",
		"-p", hex.EncodeToString(wanMarker), edge.DCAddr)
	return out, strings.Contains(out, " 0 received")
}

// waitPing pings until every echo of one round comes back or ctx ends.
func waitPing(ctx context.Context, l *Lab) (string, bool) {
	for {
		out, ok := ping(ctx, l, 2)
		if ok {
			return out, true
		}
		select {
		case <-ctx.Done():
			return out, false
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	return strings.Join(lastLines(strings.Split(strings.TrimRight(s, "\n"), "\n"), n), "\n")
}

// consoleTail returns the box's last n console lines, readable (see
// readable): what a failed test shows of the box.
func consoleTail(l *Lab, n int) string {
	return strings.Join(lastLines(readable(l.VM.LinesSince(0)), n), "\n")
}

// testWriter sends the lab's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestChildBytesIn(t *testing.T) {
	sas := `edge: #1, ESTABLISHED, IKEv2, b7b769c45a745167_i cf0807646624af73_r*
  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    in  b3f1771d,  10551234 bytes,  7412 packets,     0s ago
    out 54d829da,    1200 bytes,     9 packets
  net: #2, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    in  c0ffee01,       766 bytes,     1 packets
`
	if got := childBytesIn(sas); got != 10551234+766 {
		t.Errorf("childBytesIn = %d, want %d", got, 10551234+766)
	}
}

func isRoot() bool { return os.Geteuid() == 0 }
