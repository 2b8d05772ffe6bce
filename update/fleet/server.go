package fleet

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store"
)

// Server is the report endpoint: POST report.Path with a signed envelope.
// Any number of servers may share one PostgreSQL store.
type Server struct {
	Store store.Store
	Now   func() time.Time
	Log   *slog.Logger
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+report.Path, s.postReport)
	return mux
}

func (s *Server) postReport(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, report.MaxSize+1))
	if err != nil {
		http.Error(w, "reading the report: "+err.Error(), http.StatusBadRequest)
		return
	}
	code, err := s.Accept(r, body)
	if err != nil {
		if s.Log != nil {
			s.Log.Warn("report refused", "remote", r.RemoteAddr, "err", err)
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Accept verifies and stores one envelope; it returns the HTTP status for a
// refusal.
func (s *Server) Accept(r *http.Request, body []byte) (int, error) {
	rep, env, err := report.Parse(body)
	if err != nil {
		return http.StatusBadRequest, err
	}
	dev, err := s.Store.Device(r.Context(), rep.Device)
	if errors.Is(err, store.ErrUnknownDevice) {
		return http.StatusForbidden, fmt.Errorf("report for device %s: %w", rep.Device, err)
	}
	if err != nil {
		return http.StatusInternalServerError, err
	}
	if err := env.Verify(rep.Device, dev.Key); err != nil {
		return http.StatusForbidden, err
	}
	if rep.Board != "" && rep.Board != dev.Board {
		return http.StatusForbidden, fmt.Errorf("report for device %s: board %q; the device is enrolled as %q", rep.Device, rep.Board, dev.Board)
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	if err := s.Store.AddReport(r.Context(), rep, env.Report, now); err != nil {
		if errors.Is(err, store.ErrReplay) {
			return http.StatusConflict, err
		}
		return http.StatusInternalServerError, err
	}
	return 0, nil
}
