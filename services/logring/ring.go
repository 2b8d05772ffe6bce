// Package logring is the appliance log: every line goes to the console and
// into a bounded in-memory ring that the status service reads, so recent
// history is available without a writable log partition.
package logring

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Entry is one log line and when it was written.
type Entry struct {
	Time time.Time `json:"time"`
	Line string    `json:"line"`
}

// Ring keeps the last N lines. It is an io.Writer so that slog handlers,
// the standard logger and child processes' output can all feed it.
type Ring struct {
	console io.Writer
	now     func() time.Time

	mu      sync.Mutex
	entries []Entry // circular once full
	next    int
	full    bool
	partial []byte // a line written without its newline yet
}

// New returns a ring of size lines that also copies every write to console
// (nil for none).
func New(console io.Writer, size int) *Ring {
	if size < 1 {
		size = 1
	}
	return &Ring{console: console, now: time.Now, entries: make([]Entry, size)}
}

// Write stores each complete line of p with the current time and copies p to
// the console. A console error is not the writer's problem: logging must
// never stop the appliance, so it is ignored.
func (r *Ring) Write(p []byte) (int, error) {
	if r.console != nil {
		_, _ = r.console.Write(p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	data := p
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			r.partial = append(r.partial, data...)
			// Bound a runaway line without newline.
			if len(r.partial) > 4096 {
				r.add(now, r.partial)
				r.partial = r.partial[:0]
			}
			break
		}
		line := data[:i]
		if len(r.partial) > 0 {
			line = append(r.partial, line...)
			r.partial = r.partial[:0]
		}
		r.add(now, line)
		data = data[i+1:]
	}
	return len(p), nil
}

func (r *Ring) add(t time.Time, line []byte) {
	r.entries[r.next] = Entry{Time: t, Line: string(line)}
	r.next = (r.next + 1) % len(r.entries)
	if r.next == 0 {
		r.full = true
	}
}

// Recent returns up to n of the newest lines, oldest first; n <= 0 means all.
func (r *Ring) Recent(n int) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []Entry
	if r.full {
		all = append(all, r.entries[r.next:]...)
	}
	all = append(all, r.entries[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Logger returns a structured logger writing text lines into the ring.
func (r *Ring) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
