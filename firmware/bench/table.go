package bench

import (
	"fmt"
	"io"
	"strings"
)

// FigureState says whether a figure was measured.
type FigureState uint8

const (
	Pending  FigureState = iota // not measured (yet)
	Measured                    // Value holds the figure
	Failed                      // Err says why there is no figure
)

func (s FigureState) String() string {
	switch s {
	case Pending:
		return "pending"
	case Measured:
		return "measured"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("FigureState(%d)", uint8(s))
}

// Figure is one number of the table, or why it could not be measured. The
// zero Figure is pending. Its state is derived from its fields, so a
// figure cannot be failed without a reason or measured and failed at once.
type Figure struct {
	Value float64 // the figure, when measured
	Err   error   // why there is no figure: set means failed
	ok    bool    // Value was measured: 0 is a figure too
}

// State says whether the figure was measured.
func (f Figure) State() FigureState {
	switch {
	case f.Err != nil:
		return Failed
	case f.ok:
		return Measured
	}
	return Pending
}

// measured returns a measured figure.
func measured(v float64) Figure { return Figure{Value: v, ok: true} }

// figure returns v as a measured figure, or a failed one when err is set.
func figure(v float64, err error) Figure {
	if err != nil {
		return Figure{Err: err}
	}
	return measured(v)
}

// Row is one line of the table: a figure of pqbranch next to its baseline.
type Row struct {
	Metric   string
	Unit     string
	Value    Figure
	Baseline string // what the baseline is; "" when the row has none
	Base     Figure
}

// Failed reports whether the row's figure or its baseline is missing.
func (r Row) Failed() bool {
	return r.Value.State() != Measured || (r.Baseline != "" && r.Base.State() != Measured)
}

// settle marks every figure of the row still pending as failed with err.
func (r *Row) settle(err error) {
	for _, f := range []*Figure{&r.Value, &r.Base} {
		if f == &r.Base && r.Baseline == "" {
			continue
		}
		if f.State() == Pending {
			*f = Figure{Err: err}
		}
	}
}

// Format writes the rows as a table. A figure that could not be measured
// reads "failed" in its cell, and its reason follows the table, one line
// per failed figure, so a long reason does not break the table.
func Format(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "| %-52s | %12s | %-50s | %12s | %7s |\n", "metric", "pqbranch", "baseline", "baseline", "ratio")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|\n", dashes(54), dashes(14), dashes(52), dashes(14), dashes(9))
	for _, r := range rows {
		base, ratio := "", ""
		if r.Baseline != "" {
			base = cell(r.Base, r.Unit)
		}
		if r.Value.State() == Measured && r.Baseline != "" && r.Base.State() == Measured && r.Base.Value > 0 {
			ratio = fmt.Sprintf("%.2f", r.Value.Value/r.Base.Value)
		}
		fmt.Fprintf(w, "| %-52s | %12s | %-50s | %12s | %7s |\n", r.Metric, cell(r.Value, r.Unit), r.Baseline, base, ratio)
	}
	for _, r := range rows {
		if r.Value.State() != Measured {
			fmt.Fprintf(w, "failed: %s: %s\n", r.Metric, reason(r.Value))
		}
		if r.Baseline != "" && r.Base.State() != Measured {
			fmt.Fprintf(w, "failed: %s, baseline (%s): %s\n", r.Metric, r.Baseline, reason(r.Base))
		}
	}
}

func cell(f Figure, unit string) string {
	if f.State() != Measured {
		return strings.ToUpper(f.State().String())
	}
	return fmt.Sprintf("%.1f %s", f.Value, unit)
}

func reason(f Figure) string {
	if f.Err == nil {
		return f.State().String()
	}
	return f.Err.Error()
}

// Failures returns an error naming the rows with a figure missing, or nil
// when every figure was measured: pqbuild exits non-zero on it, after the
// table is printed.
func Failures(rows []Row) error {
	var failed []string
	for _, r := range rows {
		if r.Failed() {
			failed = append(failed, fmt.Sprintf("%q", r.Metric))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("bench: %d of %d rows failed: %s", len(failed), len(rows), strings.Join(failed, ", "))
}

func dashes(n int) string { return strings.Repeat("-", n) }
