package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Handler serves the report as JSON at /status (and /). It is read-only:
// anything but GET and HEAD is refused.
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
		_ = enc.Encode(src.Collect()) // a client gone away is not our error
	}
	mux.HandleFunc("/status", serve)
	mux.HandleFunc("/{$}", serve)
	return mux
}

// Serve listens on each of addrs (the LAN address and loopback, port
// from the config) and serves the report until ctx ends. The firewall admits
// the port from the LAN only.
func Serve(ctx context.Context, log *slog.Logger, src *Sources, addrs ...string) error {
	srv := &http.Server{
		Handler:           Handler(src),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("status: listen %s: %w", a, err)
		}
		lns = append(lns, ln)
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
