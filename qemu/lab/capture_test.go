package lab

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// The capture must see what crosses a real interface in both directions:
// here, cleartext LAN datagrams carrying the marker.
func TestCaptureReportsCleartext(t *testing.T) {
	if testing.Short() || !isRoot() {
		t.Skip("needs root for namespaces (skipped with -short)")
	}
	ctx := context.Background()
	a, err := netns.New(ctx, "capa")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := netns.New(ctx, "capb")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := netns.Veth(ctx, a, "wan0", "198.18.5.1/24", b, "wan0", "198.18.5.2/24", 0); err != nil {
		t.Fatal(err)
	}
	c, err := StartCapture(a, "wan0", NewClassifier(wanMarker))
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	if err := a.Do(func() (err error) {
		conn, err = net.Dial("udp4", "198.18.5.2:9")
		return err
	}); err != nil {
		c.Stop()
		t.Fatal(err)
	}
	for range 3 {
		conn.Write(append([]byte("payload "), wanMarker...))
	}
	conn.Close()
	time.Sleep(500 * time.Millisecond) // the reader's timeout is 200 ms
	sum, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Classes[ClassOther].Packets < 3 || len(sum.Leaks) < 3 {
		t.Fatalf("capture missed the cleartext: %v, leaks %q", sum, sum.Leaks)
	}
	if !strings.Contains(sum.Leaks[0], "198.18.5.1") {
		t.Errorf("leak %q does not name the LAN address", sum.Leaks[0])
	}
}
