package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// A step measures the figures of some rows under its own deadline. One
// step that fails or hangs fails only its own figures: the table keeps
// every other row.
type step struct {
	name  string        // for progress lines and errors
	limit time.Duration // the step's deadline, from its start
	// rows are the step's rows with the figures known beforehand (the
	// published baselines); measure fills in the others. Any figure still
	// pending when measure returns fails with measure's error. A step
	// without measure only adds its rows.
	rows    []Row
	measure func(ctx context.Context, rows []Row) error
}

// errAbandoned says a step or transfer did not return after its deadline
// and was left running: it ignored its context.
var errAbandoned = errors.New("still running after its deadline: abandoned")

// runner runs the steps of one bench run in order.
type runner struct {
	progress io.Writer
	// grace is how long a step may take to return once its deadline has
	// passed (a lab's teardown takes a while) before it is abandoned.
	grace time.Duration
}

// run measures every step and returns all their rows, failed or not. It
// stops early only when ctx itself ends (Ctrl-C): then the steps not run
// fail with ctx's error, and every row is still returned.
func (r runner) run(ctx context.Context, steps []step) []Row {
	var all []Row
	for _, s := range steps {
		if s.measure == nil { // figures known beforehand
			all = append(all, s.rows...)
			continue
		}
		rows := slices.Clone(s.rows)
		err := ctx.Err()
		if err == nil {
			fmt.Fprintf(r.progress, "bench: %s (limit %v)\n", s.name, s.limit)
			// measure gets its own copy: an abandoned step may still write
			// to it while the table is printed.
			mine := slices.Clone(s.rows)
			err = within(ctx, s.limit, r.grace, func(ctx context.Context) error { return s.measure(ctx, mine) })
			if !errors.Is(err, errAbandoned) {
				rows = mine
			}
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", s.name, err)
			fmt.Fprintf(r.progress, "bench: %v\n", err)
		} else {
			err = fmt.Errorf("%s: not measured", s.name) // a step that forgot a figure
		}
		for i := range rows {
			rows[i].settle(err)
		}
		all = append(all, rows...)
	}
	return all
}

// within runs fn with a context that ends after limit. An error after the
// deadline says so. fn should return soon after its context ends; if it
// has not returned grace later, within gives up on it and returns
// errAbandoned, leaving fn to finish on its own, so that one stuck figure
// cannot stop the rest of the table.
func within(ctx context.Context, limit, grace time.Duration, fn func(context.Context) error) error {
	timeout := fmt.Errorf("no result within %v", limit)
	ctx, cancel := context.WithTimeoutCause(ctx, limit, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done:
		case <-time.After(grace):
			err = errAbandoned
		}
	}
	if err != nil && context.Cause(ctx) == timeout {
		return fmt.Errorf("%w: %w", timeout, err)
	}
	return err
}

// Transfers are bounded by their size: minGoodput is far below anything
// the lab has carried, even under TCG, and transferFloor covers the
// connection set-up and a slow start on a busy machine.
const (
	minGoodput    = 1e6 / 8 // bytes per second: 1 Mbit/s
	transferFloor = time.Minute
)

// transferLimit is the deadline of one transfer of n bytes.
func transferLimit(n int64) time.Duration {
	return transferFloor + time.Duration(float64(n)/minGoodput*float64(time.Second))
}
