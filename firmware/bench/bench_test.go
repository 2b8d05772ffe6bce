package bench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/qemu/lab"
)

// TestRunnerKeepsEveryRow runs steps that succeed, fail, run out of time
// and hang, and checks that every row is in the table, in order, with the
// failed figures marked and the others measured.
func TestRunnerKeepsEveryRow(t *testing.T) {
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	steps := []step{{
		name: "ok", limit: time.Minute,
		rows: []Row{{Metric: "a", Unit: "s", Baseline: "published", Base: measured(2)}},
		measure: func(_ context.Context, rows []Row) error {
			rows[0].Value = measured(1)
			return nil
		},
	}, {
		name: "fails", limit: time.Minute,
		rows: []Row{{Metric: "b", Unit: "s"}, {Metric: "c", Unit: "s", Baseline: "floor"}},
		measure: func(_ context.Context, rows []Row) error {
			rows[0].Value = measured(3)
			rows[1].Base = measured(4)
			return errors.New("boom")
		},
	}, {
		name: "times out", limit: 20 * time.Millisecond,
		rows: []Row{{Metric: "d", Unit: "Mbit/s", Baseline: "clear"}},
		measure: func(ctx context.Context, _ []Row) error {
			<-ctx.Done()
			return ctx.Err()
		},
	}, {
		name: "hangs", limit: 20 * time.Millisecond,
		rows: []Row{{Metric: "e", Unit: "s"}},
		measure: func(_ context.Context, rows []Row) error {
			<-hung // ignores its context
			rows[0].Value = measured(5)
			return nil
		},
	}, {
		name: "forgets", limit: time.Minute,
		rows:    []Row{{Metric: "f", Unit: "s"}},
		measure: func(context.Context, []Row) error { return nil },
	}, {
		name: "static",
		rows: []Row{{Metric: "g", Unit: "MiB", Value: measured(6)}},
	}, {
		name: "ok after the others", limit: time.Minute,
		rows: []Row{{Metric: "h", Unit: "s", Baseline: "floor"}},
		measure: func(_ context.Context, rows []Row) error {
			rows[0].Value, rows[0].Base = measured(7), measured(8)
			return nil
		},
	}}
	var progress bytes.Buffer
	rows := runner{progress: &progress, grace: 20 * time.Millisecond}.run(context.Background(), steps)

	type want struct {
		metric      string
		value, base FigureState
		errHas      string // in the failed figures' errors
	}
	wants := []want{
		{"a", Measured, Measured, ""},
		{"b", Measured, Pending, ""}, // no baseline: Base is not a figure
		{"c", Failed, Measured, "fails: boom"},
		{"d", Failed, Failed, "times out: no result within 20ms"},
		{"e", Failed, Pending, "hangs: no result within 20ms: still running after its deadline: abandoned"},
		{"f", Failed, Pending, "not measured"},
		{"g", Measured, Pending, ""},
		{"h", Measured, Measured, ""},
	}
	if len(rows) != len(wants) {
		t.Fatalf("got %d rows, want %d: %+v", len(rows), len(wants), rows)
	}
	for i, w := range wants {
		r := rows[i]
		if r.Metric != w.metric || r.Value.State() != w.value || r.Base.State() != w.base {
			t.Errorf("row %d: got %s value %v base %v, want %s value %v base %v", i, r.Metric, r.Value.State(), r.Base.State(), w.metric, w.value, w.base)
		}
		for _, f := range []Figure{r.Value, r.Base} {
			if f.State() == Failed && !strings.Contains(f.Err.Error(), w.errHas) {
				t.Errorf("row %s: error %q does not say %q", r.Metric, f.Err, w.errHas)
			}
		}
		if failed := w.value == Failed || w.base == Failed; r.Failed() != failed {
			t.Errorf("row %s: Failed() = %v, want %v", r.Metric, r.Failed(), failed)
		}
	}
	if !errors.Is(rows[3].Value.Err, context.DeadlineExceeded) {
		t.Errorf("timed-out row's error %q is not a deadline", rows[3].Value.Err)
	}
	if !errors.Is(rows[4].Value.Err, errAbandoned) {
		t.Errorf("hung row's error %q is not errAbandoned", rows[4].Value.Err)
	}
	if rows[1].Value.Value != 3 || rows[7].Value.Value != 7 || rows[7].Base.Value != 8 {
		t.Errorf("measured values lost: %+v", rows)
	}

	err := Failures(rows)
	if err == nil {
		t.Fatal("Failures = nil with failed rows: pqbuild would exit 0")
	}
	for _, m := range []string{`"c"`, `"d"`, `"e"`, `"f"`, "4 of 8 rows failed"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("Failures %q does not name %s", err, m)
		}
	}
	for _, m := range []string{`"a"`, `"b"`, `"g"`, `"h"`} {
		if strings.Contains(err.Error(), m) {
			t.Errorf("Failures %q names measured row %s", err, m)
		}
	}

	var table bytes.Buffer
	Format(&table, rows)
	lines := strings.Split(table.String(), "\n")
	cells := func(metric string) []string {
		for _, l := range lines {
			f := strings.Split(l, "|")
			if len(f) == 7 && strings.TrimSpace(f[1]) == metric {
				return []string{strings.TrimSpace(f[2]), strings.TrimSpace(f[4]), strings.TrimSpace(f[5])}
			}
		}
		t.Fatalf("no table row for %q in\n%s", metric, table.String())
		return nil
	}
	for metric, want := range map[string][3]string{
		"a": {"1.0 s", "2.0 s", "0.50"},
		"b": {"3.0 s", "", ""},
		"c": {"FAILED", "4.0 s", ""},
		"d": {"FAILED", "FAILED", ""},
		"e": {"FAILED", "", ""},
		"g": {"6.0 MiB", "", ""},
		"h": {"7.0 s", "8.0 s", "0.88"},
	} {
		if got := cells(metric); [3]string(got) != want {
			t.Errorf("row %s: cells (value, baseline, ratio) %q, want %q", metric, got, want)
		}
	}
	for _, reason := range []string{
		"failed: c: fails: boom",
		"failed: d: times out: no result within 20ms",
		"failed: d, baseline (clear): times out: no result within 20ms",
		"failed: e: hangs: no result within 20ms",
		"failed: f: forgets: not measured",
	} {
		if !strings.Contains(table.String(), reason) {
			t.Errorf("table does not say %q:\n%s", reason, table.String())
		}
	}
	if strings.Contains(table.String(), "failed: a") || strings.Contains(table.String(), "failed: h") {
		t.Errorf("table reports a measured row as failed:\n%s", table.String())
	}
}

// TestRunnerAfterCancel checks that a cancelled run (Ctrl-C) still returns
// every row, failed with the cancellation, without running the steps.
func TestRunnerAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ran atomic.Bool
	steps := []step{{
		name: "one", limit: time.Minute,
		rows:    []Row{{Metric: "a"}, {Metric: "b", Baseline: "x"}},
		measure: func(context.Context, []Row) error { ran.Store(true); return nil },
	}}
	rows := runner{progress: &bytes.Buffer{}, grace: time.Millisecond}.run(ctx, steps)
	if ran.Load() {
		t.Error("a step ran after the run was cancelled")
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	for _, r := range rows {
		if !r.Failed() || !errors.Is(r.Value.Err, context.Canceled) {
			t.Errorf("row %s: %+v, want failed with context.Canceled", r.Metric, r.Value)
		}
	}
}

func TestFailuresAllMeasured(t *testing.T) {
	rows := []Row{
		{Metric: "a", Value: measured(1), Baseline: "b", Base: measured(2)},
		{Metric: "c", Value: measured(3)},
	}
	if err := Failures(rows); err != nil {
		t.Errorf("Failures = %v with every figure measured", err)
	}
}

func TestWithin(t *testing.T) {
	boom := errors.New("boom")
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	for _, tc := range []struct {
		name    string
		fn      func(context.Context) error
		wantIs  []error
		wantHas string
	}{
		{name: "returns", fn: func(context.Context) error { return nil }},
		{name: "fails", fn: func(context.Context) error { return boom }, wantIs: []error{boom}, wantHas: "boom"},
		{name: "honours its deadline", fn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			wantIs: []error{context.DeadlineExceeded}, wantHas: "no result within 10ms"},
		{name: "ignores its deadline", fn: func(context.Context) error { <-hung; return nil },
			wantIs: []error{errAbandoned}, wantHas: "no result within 10ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := within(context.Background(), 10*time.Millisecond, 10*time.Millisecond, tc.fn)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("within took %v for a 10ms limit", took)
			}
			if tc.wantIs == nil {
				if err != nil {
					t.Fatalf("within = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("within = nil, want an error")
			}
			for _, is := range tc.wantIs {
				if !errors.Is(err, is) {
					t.Errorf("within = %v, want it to wrap %v", err, is)
				}
			}
			if !strings.Contains(err.Error(), tc.wantHas) {
				t.Errorf("within = %q, want it to say %q", err, tc.wantHas)
			}
		})
	}
	// A parent cancelled is not a deadline of within's own.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := within(ctx, time.Hour, time.Second, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "no result within") {
		t.Errorf("within after cancel = %v, want context.Canceled without a deadline message", err)
	}
}

func TestTransferLimit(t *testing.T) {
	if got := transferLimit(0); got != transferFloor {
		t.Errorf("transferLimit(0) = %v, want the floor %v", got, transferFloor)
	}
	// 10 MiB at 1 Mbit/s is 83.9 s, on top of the floor.
	if got, want := transferLimit(10<<20), transferFloor+83886080*time.Microsecond; got != want {
		t.Errorf("transferLimit(10 MiB) = %v, want %v", got, want)
	}
	if transferLimit(20<<20) <= transferLimit(10<<20) {
		t.Error("transferLimit does not grow with the size")
	}
}

// fakePath is a transfer whose n-th call (from 1) does what script says.
type fakePath struct {
	calls  atomic.Int32
	script func(call int, ctx context.Context, n int64) (lab.TransferResult, error)
}

func (p *fakePath) goodput(limit time.Duration) goodput {
	return goodput{
		transfer: func(ctx context.Context, n int64) (lab.TransferResult, error) {
			return p.script(int(p.calls.Add(1)), ctx, n)
		},
		limit: func(int64) time.Duration { return limit }, grace: 20 * time.Millisecond,
		warmFor: time.Second, warmEach: 50 * time.Millisecond,
	}
}

// intact is a whole transfer of n bytes at mbps.
func intact(n int64, mbps float64) lab.TransferResult {
	return lab.TransferResult{Sent: n, Received: n, Elapsed: time.Duration(float64(n) * 8 / mbps / 1e6 * float64(time.Second))}
}

func TestGoodputMedian(t *testing.T) {
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	stall := func(ctx context.Context) (lab.TransferResult, error) {
		<-ctx.Done()
		return lab.TransferResult{}, ctx.Err()
	}
	for _, tc := range []struct {
		name    string
		script  func(call int, ctx context.Context, n int64) (lab.TransferResult, error)
		want    float64
		wantHas string // in the error; "" for success
		wantIs  error
	}{
		{
			name: "median of three after a slow warm-up",
			script: func(call int, ctx context.Context, n int64) (lab.TransferResult, error) {
				switch call {
				case 1:
					return lab.TransferResult{}, errors.New("no route to host")
				case 2:
					return stall(ctx) // the warm-up's own deadline ends it
				case 3:
					return intact(n, 1), nil
				}
				return intact(n, []float64{30, 10, 20}[call-4]), nil
			},
			want: 20,
		},
		{
			name: "a measured transfer stalls",
			script: func(call int, ctx context.Context, n int64) (lab.TransferResult, error) {
				if call == 3 {
					return stall(ctx)
				}
				return intact(n, 10), nil
			},
			wantHas: "transfer 2 of 3 (10 MiB): no result within 100ms", wantIs: context.DeadlineExceeded,
		},
		{
			name: "a measured transfer ignores its deadline",
			script: func(call int, ctx context.Context, n int64) (lab.TransferResult, error) {
				if call == 2 {
					<-hung
				}
				return intact(n, 10), nil
			},
			wantHas: "transfer 1 of 3", wantIs: errAbandoned,
		},
		{
			name: "a measured transfer is damaged",
			script: func(call int, ctx context.Context, n int64) (lab.TransferResult, error) {
				r := intact(n, 10)
				if call == 4 {
					r.Received = 4200000
				}
				return r, nil
			},
			wantHas: "transfer 3 of 3 (10 MiB): transfer damaged: sent 10485760, received 4200000 bytes",
		},
		{
			name: "no path at all",
			script: func(call int, ctx context.Context, n int64) (lab.TransferResult, error) {
				return lab.TransferResult{}, errors.New("no route to host")
			},
			wantHas: "no path LAN -> dc within 1s: no route to host",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePath{script: tc.script}
			start := time.Now()
			got, err := p.goodput(100 * time.Millisecond).median(context.Background())
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("median took %v with 100ms per transfer", took)
			}
			if tc.wantHas == "" {
				if err != nil || got != tc.want {
					t.Fatalf("median = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("median = %v, want an error saying %q", got, tc.wantHas)
			}
			if !strings.Contains(err.Error(), tc.wantHas) {
				t.Errorf("median error %q does not say %q", err, tc.wantHas)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("median error %q does not wrap %v", err, tc.wantIs)
			}
		})
	}
}

// TestPlanBoundsEveryStep checks that every step of a real run that
// measures something has a deadline, that no two rows share a metric, and
// that -only selects the update rows.
func TestPlanBoundsEveryStep(t *testing.T) {
	b, err := boards.Load(boards.Default)
	if err != nil {
		t.Fatal(err)
	}
	m := &firmware.Manifest{Artifacts: map[string]firmware.Artifact{}}
	all, err := plan(Options{}, b, t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	update, err := plan(Options{Only: "update"}, b, t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(update) == 0 || len(update) >= len(all) {
		t.Fatalf("-only update: %d steps of %d", len(update), len(all))
	}
	metrics := map[string]bool{}
	for _, s := range all {
		if s.measure != nil && s.limit <= 0 {
			t.Errorf("step %q measures without a deadline", s.name)
		}
		if len(s.rows) == 0 {
			t.Errorf("step %q has no rows: its failure would not show", s.name)
		}
		for _, r := range s.rows {
			if metrics[r.Metric] {
				t.Errorf("metric %q twice", r.Metric)
			}
			metrics[r.Metric] = true
		}
	}
	for i, s := range update {
		if s.name != all[len(all)-len(update)+i].name {
			t.Errorf("-only update step %d is %q, not one of the update steps", i, s.name)
		}
	}
	if _, err := plan(Options{Only: "boot"}, b, t.TempDir(), m); err == nil {
		t.Error(`plan accepted -only "boot"`)
	}
}
