package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"
)

// The dev console's shell reads each line with a full-screen line editor
// that draws the line again for every key, wrapping it onto rows of 80
// columns. Keys can be lost, or land behind a line left over in the
// editor, so Command clears the line, types it, waits to see exactly that
// line drawn, and only then presses Enter.
const (
	// echoBase and echoPerKey bound how long a typed line may take to be
	// drawn whole: a redraw per key, a third of a second each under TCG.
	echoBase   = 20 * time.Second
	echoPerKey = time.Second
	// typeTries bounds the retyping of a line that was never drawn.
	typeTries = 4
	// killLine is C-u: the editor deletes the line up to the cursor (an
	// empty line stays empty), and a tty in canonical mode (a command still
	// running, no editor yet) drops the pending line. It is no signal: a
	// running command is not interrupted.
	killLine = "\x15"
	// drawnRows is how many console lines a drawn command may span.
	drawnRows = 3
)

// ansiEscape matches the CSI sequences the line editor draws with.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// Command types cmd on the console's shell and presses Enter once the line
// editor has drawn exactly that line. It returns when the line is entered,
// not when the command is done: the caller waits for its effect.
func (l *Lab) Command(ctx context.Context, cmd string) error {
	return l.typeCommand(ctx, cmd, typeTries)
}

// TryCommand is Command with a single try, for a box that may be
// rebooting with no shell to type to: the caller tries again later.
func (l *Lab) TryCommand(ctx context.Context, cmd string) error {
	return l.typeCommand(ctx, cmd, 1)
}

func (l *Lab) typeCommand(ctx context.Context, cmd string, tries int) error {
	for try := 1; ; try++ {
		// A comment of its own makes each try's line unique, so that the
		// last frame of an earlier, identical line cannot pass for it.
		line := fmt.Sprintf("%s #%d", cmd, rand.Uint32())
		mark := l.VM.Mark()
		if err := l.VM.Send(killLine + line); err != nil {
			return fmt.Errorf("lab: console: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, echoBase+time.Duration(len(line))*echoPerKey)
		_, err := l.VM.WaitLineFunc(wctx, mark, fmt.Sprintf("prompt showing %q", line), drawnLine(line))
		cancel()
		if err == nil {
			if err := l.VM.Send("\r"); err != nil {
				return fmt.Errorf("lab: console: %w", err)
			}
			return nil
		}
		if ctx.Err() != nil || try == tries {
			return fmt.Errorf("lab: console: typed %q %d times: %w", cmd, try, err)
		}
	}
}

// drawnLine returns a check, fed the console's lines in order, that
// accepts the line completing a drawing of "> cmd" and nothing else. A
// long line is wrapped at a space onto rows indented by two; the rows are
// compared joined, with runs of spaces as one.
func drawnLine(cmd string) func(line string) bool {
	want := strings.Join(strings.Fields(cmd), " ")
	var rows []string
	return func(line string) bool {
		rows = append(rows, strings.TrimRight(ansiEscape.ReplaceAllString(line, ""), " "))
		if len(rows) > drawnRows {
			rows = rows[1:]
		}
		// The drawing ends at this line: find where it starts.
		for i := len(rows) - 1; i >= 0; i-- {
			if text, ok := strings.CutPrefix(rows[i], "> "); ok {
				parts := append([]string{text}, rows[i+1:]...)
				return strings.Join(strings.Fields(strings.Join(parts, " ")), " ") == want
			}
			if !strings.HasPrefix(rows[i], "  ") {
				return false // neither the prompt's row nor a wrapped one
			}
		}
		return false
	}
}
