package freebind

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.LockMainThread()
	os.Exit(m.Run())
}

// The boot race: a service listens on the LAN address before the network
// service has assigned it. A plain listen fails; a freebind one succeeds
// and accepts once the address is there.
func TestListenBeforeAddress(t *testing.T) {
	ns := nstest.New(t, "freebind")[0]
	ctx := context.Background()
	if _, err := ns.Run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	const addr = "198.18.1.1:8080"
	var ln net.Listener
	if err := ns.Do(func() error {
		if l, err := net.Listen("tcp4", addr); err == nil {
			l.Close()
			t.Error("plain listen on an unassigned address succeeded; the test proves nothing")
		}
		var err error
		ln, err = ListenConfig().Listen(ctx, "tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("freebind listen: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	if _, err := ns.Run(ctx, "ip", "addr", "add", "198.18.1.1/24", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if string(b) != "hello" {
			t.Errorf("read %q, %v", b, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("dial after the address appeared: %v", err)
	}
}
