package status

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// The boot race: status starts before the network service has put the
// LAN address on the interface. Serve must not fail ("cannot assign
// requested address" made the supervisor restart it); it serves as soon as
// the address is there.
func TestServeBeforeLANAddress(t *testing.T) {
	ns := nstest.New(t, "statusrace")[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := ns.Run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	// Serve creates its sockets on the calling thread: inside ns.
	go ns.Do(func() error {
		errc <- Serve(ctx, slog.New(slog.DiscardHandler), sources(), "198.18.1.1:8080")
		return nil
	})
	select {
	case err := <-errc:
		t.Fatalf("Serve returned before the address existed: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := ns.Run(ctx, "ip", "addr", "add", "198.18.1.1/24", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", "198.18.1.1:8080", 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	b, err := Fetch(ctx, client, "http://198.18.1.1:8080/status")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := Decode(b); err != nil || r.Version != sources().Version {
		t.Fatalf("report %+v, %v", r, err)
	}
}
