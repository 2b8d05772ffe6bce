package status

import (
	"context"
	"fmt"
	"time"
)

// Poll reads reports with fetch every interval until ok accepts one or ctx
// ends. It returns the last report it read either way, and on timeout the
// last fetch error too, so a caller can show what the box last said.
func Poll(ctx context.Context, interval time.Duration, fetch func(context.Context) (*Report, error), ok func(*Report) bool) (*Report, error) {
	var (
		last    *Report
		lastErr error
	)
	for {
		r, err := fetch(ctx)
		if err == nil {
			last, lastErr = r, nil
			if ok(r) {
				return r, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return last, ctx.Err()
		case <-time.After(interval):
		}
	}
}
