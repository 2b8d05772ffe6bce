package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Store holds the configuration in force. A reload that fails leaves it
// untouched and records the error for the status page: the appliance never
// drops a working config for a broken one.
type Store struct {
	path   string
	log    *slog.Logger
	checks []Check // run on every load of the file, not on a fallback

	mu      sync.Mutex
	current *Config
	lastErr error
	at      time.Time
	subs    []chan *Config
}

// NewStore returns a store for the file at path, which every load checks
// with checks besides the validator. Call Reload to load it.
func NewStore(path string, log *slog.Logger, checks ...Check) *Store {
	return &Store{path: path, log: log, checks: checks}
}

// Path is the file the store loads.
func (s *Store) Path() string { return s.path }

// Current returns the configuration in force, nil before the first good load.
func (s *Store) Current() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// LastError returns the error of the latest load, nil if it succeeded.
func (s *Store) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Reload loads the file again. On success the new config replaces the current
// one and subscribers are told; on failure nothing changes but LastError.
func (s *Store) Reload() error {
	c, err := Load(s.path, s.checks...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	s.at = time.Now()
	if err != nil {
		if s.current != nil {
			s.log.Error("config rejected, keeping the previous one", "err", err)
		} else {
			s.log.Error("config rejected", "err", err)
		}
		return err
	}
	s.current = c
	s.log.Info("config loaded", "file", s.path, "hostname", c.Hostname)
	for _, ch := range s.subs {
		// Only the newest config matters: replace an unread one.
		select {
		case <-ch:
		default:
		}
		ch <- c
	}
	return nil
}

// Subscribe returns a channel that receives each newly loaded config. An
// unread config is replaced by a newer one, never queued.
func (s *Store) Subscribe() <-chan *Config {
	ch := make(chan *Config, 1)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	return ch
}

// Watch reloads on every value from reload (SIGHUP, the reload applet)
// until ctx ends.
func (s *Store) Watch(ctx context.Context, reload <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			_ = s.Reload() // logged and recorded by Reload
		}
	}
}

// Fallback puts a config parsed from b in force when none could be loaded,
// e.g. the board's default when the file on the data partition is broken.
// The file's error stays in LastError. It fails if b is invalid or a config
// is already in force. The store's checks do not apply: they are about the
// installed file, and a fallback ships with the firmware that validates it.
func (s *Store) Fallback(name string, b []byte) error {
	c, err := Parse(name, b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil {
		return fmt.Errorf("config: a config is already in force")
	}
	s.current = c
	s.log.Warn("running the fallback config", "name", name)
	return nil
}
