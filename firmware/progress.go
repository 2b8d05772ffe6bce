package firmware

import (
	"fmt"
	"io"
	"time"
)

// steps prints numbered progress lines for the long build steps, with the
// time each took, so a user sees where a slow build spends its time.
type steps struct {
	w     io.Writer
	n, of int
	start time.Time
	last  time.Time
}

func newSteps(w io.Writer, of int) *steps {
	if w == nil {
		w = io.Discard
	}
	now := time.Now()
	return &steps{w: w, of: of, start: now, last: now}
}

func (s *steps) step(format string, args ...any) {
	if s.n > 0 {
		fmt.Fprintf(s.w, "      took %.1fs\n", time.Since(s.last).Seconds())
	}
	s.n++
	fmt.Fprintf(s.w, "[%d/%d] %s\n", s.n, s.of, fmt.Sprintf(format, args...))
	s.last = time.Now()
}

func (s *steps) detail(format string, args ...any) {
	fmt.Fprintf(s.w, "      %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(s.last).Seconds())
}

func (s *steps) done(format string, args ...any) {
	fmt.Fprintf(s.w, "      took %.1fs\n", time.Since(s.last).Seconds())
	fmt.Fprintf(s.w, "done in %.1fs: %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}
