package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/services/internal/freebind"
)

// Handler serves the report as JSON at /status (and /). It is read-only:
// anything but GET and HEAD is refused. Clients on loopback (the console)
// get the whole report; the LAN gets its Summary, without the SPIs, message
// IDs and debug log an attacker could aim forged packets with.
func Handler(src *Sources) http.Handler {
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		rep := src.Collect()
		if !fromLoopback(r) {
			rep = rep.Summary()
		}
		_ = enc.Encode(rep) // a client gone away is not our error
	}
	if src.Metrics != nil {
		mux.Handle("GET /metrics", src.Metrics)
	}
	mux.HandleFunc("/status", serve)
	mux.HandleFunc("/{$}", serve)
	return mux
}

func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// maxConns bounds the status server's open connections on each listener.
// PID 1 serves it and shares its file descriptors with every service: one
// LAN host holding idle connections must not exhaust them.
const maxConns = 16

// limitListener accepts at most n connections at a time; further clients
// wait in the kernel's backlog until one closes.
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Serve listens on each of addrs (the LAN address and loopback, port
// from the config) and serves the report until ctx ends. The firewall admits
// the port from the LAN only.
func Serve(ctx context.Context, log *slog.Logger, src *Sources, addrs ...string) error {
	srv := &http.Server{
		Handler:           Handler(src),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       10 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	// One request per connection: the report is fetched now and then, and
	// idle keep-alive connections would hold the few slots (maxConns).
	srv.SetKeepAlivesEnabled(false)
	var lns []net.Listener
	for _, a := range addrs {
		// Freebind: at boot the LAN address may not be assigned yet.
		ln, err := freebind.ListenConfig().Listen(ctx, "tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("status: listen %s: %w", a, err)
		}
		lns = append(lns, &limitListener{Listener: ln, slots: make(chan struct{}, maxConns)})
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("status endpoint", "addr", ln.Addr())
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		srv.Close()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("status: %w", err)
	}
}
