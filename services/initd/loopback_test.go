package initd

import (
	"context"
	"net"
	"testing"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// TestUpLoopback needs 127.0.0.1 bindable after upLoopback.
func TestUpLoopback(t *testing.T) {
	ns := nstest.New(t, "initlo")[0]
	// Down and without 127.0.0.1: lo as the kernel hands it to init.
	for _, args := range [][]string{{"link", "set", "lo", "down"}, {"addr", "flush", "dev", "lo"}} {
		if _, err := ns.Run(context.Background(), "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	bind := func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err == nil {
			ln.Close()
		}
		return err
	}
	if err := ns.Do(bind); err == nil {
		t.Fatal("127.0.0.1 bindable with lo down; the test proves nothing")
	}
	if err := ns.Do(upLoopback); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(bind); err != nil {
		t.Fatalf("after upLoopback: %v", err)
	}
}
