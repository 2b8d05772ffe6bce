package lab

import (
	"context"
	"errors"
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
	// startWait bounds how long the shell may take, after Enter, to print
	// a command's start marker.
	startWait = 30 * time.Second
	// lookBack is how many console lines before a command are read for the
	// editor's drawings, which a new drawing may refer to.
	lookBack = 1000
	// cursorBlock draws the editor's cursor, and showCursor is the last
	// thing the editor prints when it has taken a line.
	cursorBlock = "\x1b[7m"
	showCursor  = "\x1b[?25h"
	// cursorDown moves the cursor one row down: the editor's way of
	// skipping a row that has not changed.
	cursorDown = "\x1b[1B"
)

// ansiEscape matches the CSI sequences the line editor draws with,
// leadingEscapes those a console line starts with, and frameStart what
// starts a drawing's first row: back to the start of the line, and clear it.
var (
	ansiEscape     = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
	leadingEscapes = regexp.MustCompile(`^(?:\x1b\[[0-9;?]*[A-Za-z])*`)
	frameStart     = regexp.MustCompile(`\x1b\[[0-9]*D\x1b\[2K`)
)

// plain is a console line's text: no escape sequences, no trailing blanks.
func plain(line string) string {
	return strings.TrimRight(ansiEscape.ReplaceAllString(line, ""), " \r")
}

// isPrompt reports whether a plain row is the first row of the editor's
// drawing: the prompt, and the line's start after it.
func isPrompt(row string) bool {
	return row == ">" || strings.HasPrefix(row, "> ")
}

// lastFrame cuts a console line to the drawing that starts last in it.
// The editor ends its help row without a newline, so the next drawing's
// first row shares the help row's console line.
func lastFrame(line string) string {
	if at := frameStart.FindAllStringIndex(line, -1); len(at) > 0 {
		return line[at[len(at)-1][0]:]
	}
	return line
}

// serial is what typing a command needs of the box's serial console: a
// *qemu.VM, or a scripted double in tests.
type serial interface {
	Mark() int
	Send(s string) error
	WaitLineFunc(ctx context.Context, mark int, what string, ok func(line string) bool) (string, error)
	LinesSince(mark int) []string
}

// Command types cmd on the console's shell and presses Enter once the line
// editor has drawn exactly that line. It returns when the shell has started
// the line, not when the command is done: the caller waits for its effect.
//
// The line starts with a marker the shell prints, so a start proves that
// the line was entered, not that cmd itself ran (a syntax error in cmd
// still prints it). The shell's own words (exit, enablecomp) only work on
// a line of their own, so they cannot be typed here.
func (l *Lab) Command(ctx context.Context, cmd string) error {
	return typeCommand(ctx, l.VM, cmd, typeTries)
}

// TryCommand is Command with a single try, for a box that may be
// rebooting with no shell to type to: the caller tries again later.
func (l *Lab) TryCommand(ctx context.Context, cmd string) error {
	return typeCommand(ctx, l.VM, cmd, 1)
}

func typeCommand(ctx context.Context, c serial, cmd string, tries int) error {
	// Drawings are read from well before the first try: the editor skips
	// the rows that did not change since its last drawing, which may be an
	// earlier try's or older. Only a drawing of this try's line can match.
	from := max(c.Mark()-lookBack, 0)
	for try := 1; ; try++ {
		// The shell prints a start marker before it runs cmd. It computes
		// the marker, so the drawn line cannot match it, and its random
		// number makes each try's line unique, so that the last frame of
		// an earlier, identical line cannot pass for it.
		n := rand.IntN(1 << 20)
		line := fmt.Sprintf("echo started-$((%d+1)); %s", n, cmd)
		mark := c.Mark()
		if err := c.Send(killLine + line); err != nil {
			return fmt.Errorf("lab: console: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, echoBase+time.Duration(len(line))*echoPerKey)
		_, err := c.WaitLineFunc(wctx, from, fmt.Sprintf("prompt showing %q", line), drawnLine(line))
		cancel()
		if err == nil {
			return enter(ctx, c, cmd, line, from, mark, n+1)
		}
		if ctx.Err() != nil || try == tries {
			return fmt.Errorf("lab: console: typed %q %d times: %w; the console since:\n%s", cmd, try, err, consoleSince(c, mark))
		}
	}
}

// enter presses Enter under the drawn line and waits for the shell to
// print its start marker. If the marker is late and the editor never drew
// the line as taken, the Enter was lost like any key can be: it is pressed
// once more. The line is never retyped, and Enter is not pressed again
// once the editor took the line, so that a line never runs twice.
func enter(ctx context.Context, c serial, cmd, line string, from, mark, started int) error {
	re := regexp.MustCompile(fmt.Sprintf(`started-%d\b`, started))
	waitStart := func() error {
		wctx, cancel := context.WithTimeout(ctx, startWait)
		defer cancel()
		_, err := c.WaitLineFunc(wctx, mark, fmt.Sprintf("start marker started-%d", started), re.MatchString)
		return err
	}
	if err := c.Send("\r"); err != nil {
		return fmt.Errorf("lab: console: %w", err)
	}
	err := waitStart()
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		if !entered(c.LinesSince(from), line) {
			if err := c.Send("\r"); err != nil {
				return fmt.Errorf("lab: console: %w", err)
			}
		}
		if err = waitStart(); err == nil {
			return nil
		}
	}
	what := "the editor did not take the line"
	if entered(c.LinesSince(from), line) {
		what = "the editor took the line, but the shell did not start it"
	}
	return fmt.Errorf("lab: console: %q: %s: %w; the console since:\n%s", cmd, what, err, consoleSince(c, mark))
}

// entered reports whether the editor drew line as taken: once Enter took
// it, the editor draws it again with no cursor block.
func entered(lines []string, line string) bool {
	drawn := drawnLine(line)
	for _, l := range lines {
		if drawn(l) && !strings.Contains(l, cursorBlock) {
			return true
		}
	}
	return false
}

// drawnLine returns a check, fed the console's lines in order, that
// accepts the line completing a drawing of "> cmd" and nothing else. A
// long line is wrapped at a space onto rows indented by two; the rows are
// compared joined, with runs of spaces as one. The editor writes again
// only the rows that changed and moves the cursor down over the others
// (bubbletea's standard renderer), so a row it skipped is taken from its
// previous drawing.
func drawnLine(cmd string) func(line string) bool {
	want := strings.Join(strings.Fields(cmd), " ")
	var (
		prev, cur []string // the rows of the previous drawing and of this one
		drawing   bool     // whether the lines so far continue cur
	)
	return func(line string) bool {
		line = lastFrame(line)
		skipped := strings.Count(leadingEscapes.FindString(line), cursorDown)
		row := plain(line)
		switch {
		case isPrompt(row):
			prev, cur, drawing = cur, []string{row}, true
		case drawing && (skipped > 0 || strings.HasPrefix(row, "  ")):
			for ; skipped > 0; skipped-- {
				if len(cur) >= len(prev) {
					drawing = false // a skipped row never seen drawn
					return false
				}
				cur = append(cur, prev[len(cur)])
			}
			cur = append(cur, row)
		default:
			drawing = false // a log line, or anything else, ends a drawing
			return false
		}
		text := strings.TrimPrefix(strings.Join(cur, " "), ">")
		return strings.Join(strings.Fields(text), " ") == want
	}
}

// readable returns console lines as a person reads them: without the line
// editor's escape sequences, and with each typed line drawn once. The
// editor draws the line again for every key, so a log of the raw console
// is mostly redraws that push out what explains a failure. What tells
// whether a line was entered stays: the cursor, drawn as ▮ until the
// editor takes the line, and "[editor closed]" where it let go of the
// terminal. A row the editor left as it was shows as "  ⋮".
func readable(lines []string) []string {
	var out []string
	drawing := -1 // where the current drawing starts in out, or -1
	for _, raw := range lines {
		if drawing >= 0 {
			for range strings.Count(leadingEscapes.FindString(raw), cursorDown) {
				out = append(out, "  ⋮")
			}
		}
		raw = strings.ReplaceAll(lastFrame(raw), cursorBlock, "▮")
		raw = strings.ReplaceAll(raw, showCursor, "[editor closed] ")
		line := plain(raw)
		switch {
		case isPrompt(line):
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

// consoleSince is the console since mark, readable and at most 30 lines,
// for errors.
func consoleSince(c serial, mark int) string {
	return strings.Join(lastLines(readable(c.LinesSince(mark)), 30), "\n")
}
