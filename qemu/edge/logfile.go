package edge

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"time"
)

// Log returns everything charon logged so far, across restarts. After Stop
// it returns the log as it was when the instance was deleted.
func (e *Edge) Log() string {
	e.mu.Lock()
	closed, last := e.closed, e.lastLog
	e.mu.Unlock()
	if closed {
		return last
	}
	return e.readLog()
}

// readLog reads the log file; it takes no lock, so code holding e.mu uses it.
func (e *Edge) readLog() string {
	data, err := os.ReadFile(e.logPath)
	if err != nil {
		return ""
	}
	return string(data)
}

// WaitLog waits until the log matches re and returns the first match. It
// gives up early when charon is not running, since the log can no longer
// change.
func (e *Edge) WaitLog(ctx context.Context, re *regexp.Regexp) (string, error) {
	for {
		if m := re.FindString(e.Log()); m != "" {
			return m, nil
		}
		if !e.Running() {
			// One last look: charon may have written the line as it exited.
			if m := re.FindString(e.Log()); m != "" {
				return m, nil
			}
			return "", fmt.Errorf("edge: charon not running, log never matched %q", re)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("edge: log never matched %q: %w", re, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
