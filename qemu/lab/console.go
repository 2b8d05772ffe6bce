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
	drawnRows = 4
	// startWait bounds how long the shell may take, after Enter, to print
	// a command's start marker, and enterPresses how often Enter is
	// pressed for it.
	startWait    = 30 * time.Second
	enterPresses = 2
)

// ansiEscape matches the CSI sequences the line editor draws with.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// Command types cmd on the console's shell and presses Enter once the line
// editor has drawn exactly that line. It returns when the shell has started
// the command, not when the command is done: the caller waits for its
// effect.
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
		// The shell prints a start marker before it runs cmd. It computes
		// the marker, so the drawn line cannot match it. A comment of its
		// own makes each try's line unique, so that the last frame of an
		// earlier, identical line cannot pass for it.
		n := rand.IntN(1 << 20)
		line := fmt.Sprintf("echo started-$((%d+1)); %s #%d", n, cmd, rand.Uint32())
		mark := l.VM.Mark()
		if err := l.VM.Send(killLine + line); err != nil {
			return fmt.Errorf("lab: console: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, echoBase+time.Duration(len(line))*echoPerKey)
		_, err := l.VM.WaitLineFunc(wctx, mark, fmt.Sprintf("prompt showing %q", line), drawnLine(line))
		cancel()
		if err == nil {
			return l.enter(ctx, cmd, mark, n+1)
		}
		if ctx.Err() != nil || try == tries {
			return fmt.Errorf("lab: console: typed %q %d times: %w; the console since:\n%s", cmd, try, err, l.consoleSince(mark))
		}
	}
}

// enter presses Enter under a drawn line and waits for the shell to print
// its start marker. An Enter can be lost like any key; it is pressed again
// rather than the line retyped, because a line that did start must not run
// twice. An Enter too many is an empty line at the next prompt.
func (l *Lab) enter(ctx context.Context, cmd string, mark, started int) error {
	re := regexp.MustCompile(fmt.Sprintf(`started-%d\b`, started))
	var err error
	for press := 1; press <= enterPresses; press++ {
		if err := l.VM.Send("\r"); err != nil {
			return fmt.Errorf("lab: console: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, startWait)
		_, err = l.VM.WaitLineAfter(wctx, mark, re)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("lab: console: the shell did not start %q after Enter: %w; the console since:\n%s",
		cmd, err, l.consoleSince(mark))
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

// Readable returns console lines as a person reads them: without the line
// editor's escape sequences, and with each typed line drawn once. The
// editor draws the line again for every key, so a log of the raw console
// is mostly redraws that push out what explains a failure.
func Readable(lines []string) []string {
	var out []string
	drawing := -1 // where the current drawing starts in out, or -1
	for _, raw := range lines {
		line := strings.TrimRight(ansiEscape.ReplaceAllString(raw, ""), " \r")
		switch {
		case line == ">" || strings.HasPrefix(line, "> "):
			if drawing >= 0 {
				out = out[:drawing] // a newer drawing of the same line
			}
			drawing = len(out)
		case drawing >= 0 && (strings.HasPrefix(line, "  ") || strings.HasPrefix(line, editorHelp)):
			// A wrapped row or the help row of the same drawing.
		default:
			drawing = -1
		}
		out = append(out, line)
	}
	return out
}

// editorHelp starts the help row the line editor draws below the line.
const editorHelp = "M-? toggle key help"

// lastLines returns the last n of lines, or all of them.
func lastLines(lines []string, n int) []string {
	return lines[max(len(lines)-n, 0):]
}

// consoleSince is the box's console since mark, readable and at most 30
// lines, for errors.
func (l *Lab) consoleSince(mark int) string {
	return strings.Join(lastLines(Readable(l.VM.LinesSince(mark)), 30), "\n")
}
