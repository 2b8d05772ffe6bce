package lab

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The dev console's shell reads each line with a full-screen line editor
// that draws the line again for every key, wrapping it onto rows of 80
// columns. Keys typed while the previous command is still finishing can be
// lost between two editors, so Command types a line, waits to see it drawn
// whole, and only then presses Enter.
const (
	// echoBase and echoPerKey bound how long a typed line may take to be
	// drawn whole: a redraw per key, a third of a second each under TCG.
	echoBase   = 20 * time.Second
	echoPerKey = time.Second
	// typeTries bounds the retyping of a line that was never drawn.
	typeTries = 4
	// killLine is C-u: the editor deletes the line up to the cursor, and a
	// tty in canonical mode (no editor running yet) drops the pending line.
	killLine = "\x15"
	// drawnRows is how many console lines a drawn command may span.
	drawnRows = 3
)

// ansiEscape matches the CSI sequences the line editor draws with.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// Command types cmd on the console's shell and presses Enter once the line
// editor has drawn it whole after its prompt. It returns when the line is
// entered, not when the command is done: the caller waits for its effect.
func (l *Lab) Command(ctx context.Context, cmd string) error {
	for try := 1; ; try++ {
		mark := l.VM.Mark()
		if err := l.VM.Send(cmd); err != nil {
			return fmt.Errorf("lab: console: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, echoBase+time.Duration(len(cmd))*echoPerKey)
		_, err := l.VM.WaitLineFunc(wctx, mark, fmt.Sprintf("prompt showing %q", cmd), drawnLine(cmd))
		cancel()
		if err == nil {
			if err := l.VM.Send("\r"); err != nil {
				return fmt.Errorf("lab: console: %w", err)
			}
			return nil
		}
		if ctx.Err() != nil || try == typeTries {
			return fmt.Errorf("lab: console: typed %q %d times: %w", cmd, try, err)
		}
		if err := l.VM.Send(killLine); err != nil {
			return fmt.Errorf("lab: console: %w", err)
		}
	}
}

// drawnLine returns a check, fed the console's lines in order, that
// accepts the line completing a drawing of "> cmd". A long line is wrapped
// at a space onto rows indented by two, so rows are compared joined and
// without their spaces.
func drawnLine(cmd string) func(line string) bool {
	want := ">" + noSpace(cmd)
	var rows []string
	return func(line string) bool {
		rows = append(rows, noSpace(ansiEscape.ReplaceAllString(line, "")))
		if len(rows) > drawnRows {
			rows = rows[1:]
		}
		for i := range rows {
			if strings.Contains(strings.Join(rows[i:], ""), want) {
				return true
			}
		}
		return false
	}
}

func noSpace(s string) string { return strings.Join(strings.Fields(s), "") }
