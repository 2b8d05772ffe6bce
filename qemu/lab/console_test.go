package lab

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Console lines as the dev shell's line editor draws them (captured from a
// box under QEMU): a short line, and a long one wrapped onto two rows with
// a log line written between two redraws. Only a drawing of exactly the
// command is accepted.
func TestDrawnLine(t *testing.T) {
	const (
		row1    = "\x1b[0D\x1b[1A\x1b[2K\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mecho aaaa bbbb \x1b[0m\x1b[40m              \x1b[0m"
		row2    = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40mcccc dddd\x1b[0m\x1b[40m\x1b[7m \x1b[0m\x1b[0m\x1b[40m\x1b[0m\x1b[40m           \x1b[0m"
		row2Cut = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40mcccc ddd\x1b[0m\x1b[40m\x1b[7m \x1b[0m\x1b[0m\x1b[40m\x1b[0m\x1b[40m           \x1b[0m"
		logLine = "\x1b[0Dtime=2026-12-05T12:01:39.409Z level=INFO msg=exchange svc=tunnel"
		short   = "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mupdate check\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		partial = "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mupdate chec\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		noSpace = "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mupdatecheck\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		extra   = "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mupdate checkx\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		twice   = "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mupdate checkupdate check\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		tail    = "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40mdate check\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		// A line of three rows; typing on at the end of the third leaves
		// the second unchanged, and the editor moves down over it.
		row2Full = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40mcccc dddd\x1b[0m\x1b[40m           \x1b[0m"
		row3Cut  = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40meeee ff\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
		row3Skip = "\x1b[1B\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40meeee ffff\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
	)
	for _, tc := range []struct {
		name  string
		cmd   string
		lines []string
		want  int // index of the accepted line; -1 for none
	}{
		{"short", "update check", []string{partial, short}, 1},
		{"only part typed", "update check", []string{partial, partial}, -1},
		{"head lost", "update check", []string{tail}, -1},
		{"wrapped", "echo aaaa bbbb cccc dddd", []string{row1, row2Cut, logLine, row1, row2}, 4},
		{"wrapped, not all typed", "echo aaaa bbbb cccc dddd", []string{row1, row2Cut, logLine, row1, row2Cut}, -1},
		{"other prompt", "update apply-now", []string{short, partial}, -1},
		{"space lost", "update check", []string{noSpace}, -1},
		{"more typed", "update check", []string{extra}, -1},
		{"typed twice", "update check", []string{twice}, -1},
		{"wrapped, with a row of another line before", "echo aaaa bbbb cccc dddd", []string{short, row1, row2}, 2},
		{"three rows, the second skipped", "echo aaaa bbbb cccc dddd eeee ffff", []string{row1, row2Full, row3Cut, row1, row3Skip}, 4},
		{"three rows, the second skipped, a log line between", "echo aaaa bbbb cccc dddd eeee ffff", []string{row1, row2Full, row3Cut, logLine, row1, row3Skip}, 5},
		{"a skipped row never drawn", "echo aaaa bbbb cccc dddd eeee ffff", []string{row1, row3Skip}, -1},
		{"a skipped row of another line", "echo aaaa bbbb cccc dddd eeee ffff", []string{row1, row2Cut, row3Cut, row1, row3Skip}, -1},
		{"on the help row's console line", "update check", []string{"\x1b[90mM-?\x1b[0m \x1b[90mtoggle key help\x1b[0m" + short}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drawn := drawnLine(tc.cmd)
			got := -1
			for i, l := range tc.lines {
				if drawn(l) {
					got = i
					break
				}
			}
			if got != tc.want {
				t.Errorf("accepted line %d, want %d", got, tc.want)
			}
		})
	}
}

// Frames as the line editor draws a short line (captured from a box under
// QEMU): while it is typed, with the cursor block; once Enter took it,
// without; then the shell's output after the editor let go.
func editing(text string) string {
	return "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40m" + text + "\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
}

// firstRow is the first row of a drawing whose cursor is on a later row,
// lastRow the row with the cursor, and middle a row in between.
func firstRow(text string) string {
	return "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40m" + text + "\x1b[0m"
}

func lastRow(text string) string {
	return "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40m" + text + "\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
}

const middle = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40mcccc dddd\x1b[0m\x1b[40m           \x1b[0m"

func taken(text string) string {
	return "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[37m\x1b[37m> \x1b[0m\x1b[0m\x1b[37m" + text + "\x1b[0m\x1b[37m\x1b[37m \x1b[0m"
}

func closed(output string) string {
	return "\x1b[0D\x1b[2K\x1b[?25h\x1b[?1002l\x1b[?1003l\x1b[?1006l" + output
}

// A failed test shows the box's console through readable: every drawing of
// a typed line but the last is dropped, escape sequences go, log lines and
// command output stay where they were, and whether a line was taken shows.
func TestReadable(t *testing.T) {
	const (
		help    = "\x1b[90mM-?\x1b[0m \x1b[90mtoggle key help\x1b[0m\x1b[90m • \x1b[0m\x1b[90mC-d\x1b[0m \x1b[90merase/stop\x1b[0m"
		wrapped = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40mcccc dddd\x1b[0m\x1b[40m\x1b[7m \x1b[0m\x1b[0m\x1b[40m\x1b[0m\x1b[40m           \x1b[0m"
		logLine = "\x1b[0Dtime=2026-12-05T12:01:39.409Z level=INFO msg=exchange svc=tunnel"
	)
	got := readable([]string{
		"init: watchdog armed",
		editing(""), help,
		editing("e"), editing("ec"), logLine, editing("echo aaaa bbbb"), wrapped, help,
		editing("echo hi-$((1+1))"), taken("echo hi-$((1+1))"), closed("hi-2"),
		help + editing("update"), // the help row ends without a newline
		firstRow("echo aaaa bbbb"), middle, lastRow("eeee"),
		firstRow("echo aaaa bbbb"), cursorDown + lastRow("eeee ffff"),
	})
	want := []string{
		"init: watchdog armed",
		"> ec▮", // the last drawing before the log line
		"time=2026-12-05T12:01:39.409Z level=INFO msg=exchange svc=tunnel",
		"> echo hi-$((1+1))", // taken: no cursor
		"[editor closed] hi-2",
		"> echo aaaa bbbb", // the last drawing; the row it skipped shows as ⋮
		"  ⋮",
		"  eeee ffff▮",
	}
	if !slices.Equal(got, want) {
		t.Errorf("readable:\n got %q\nwant %q", got, want)
	}
}

// scriptedShell is a serial console with the dev shell behind it, as
// scripted by a test. It draws what is typed as bubbletea's renderer does,
// on rows of shellWidth: the first row always, a later row only if it
// changed, else it moves the cursor down over it. It loses the last key of
// the first lostKeys typings, ignores the first lostEnters Enters, and then
// takes the line, printing the start marker the line computes unless the
// shell hangs. Nothing happens later than the call that caused it, so a
// wait that finds nothing has timed out.
type scriptedShell struct {
	lostKeys   int
	lostEnters int
	hangs      bool

	lines   []string
	editor  string   // the line the editor holds
	drawn   []string // the rows of its last drawing
	typed   int
	enters  int
	started []string
}

const shellWidth = 32

var startMarker = regexp.MustCompile(`^echo started-\$\(\((\d+)\+1\)\);`)

// draw emits a drawing of the editor's line, the cursor at its end, or
// taken: restyled, so every row is written.
func (s *scriptedShell) draw(taken bool) {
	var rows []string
	for _, w := range strings.Fields(s.editor) {
		if n := len(rows); n > 0 && len(rows[n-1])+1+len(w) <= shellWidth {
			rows[n-1] += " " + w
		} else {
			rows = append(rows, w)
		}
	}
	skip := ""
	for i, r := range rows {
		if !taken && i == len(rows)-1 {
			r += cursorBlock + " \x1b[0m"
		}
		switch {
		case i == 0:
			s.lines = append(s.lines, "\x1b[0D\x1b[2K> "+r)
		case !taken && len(rows) <= len(s.drawn) && s.drawn[i] == r:
			skip += cursorDown
		default:
			s.lines = append(s.lines, skip+"  "+r)
			skip = ""
		}
		rows[i] = r
	}
	s.drawn = rows
}

func (s *scriptedShell) Mark() int { return len(s.lines) }

func (s *scriptedShell) Send(keys string) error {
	switch {
	case strings.HasPrefix(keys, killLine):
		s.typed++
		s.editor = strings.TrimPrefix(keys, killLine)
		if s.typed <= s.lostKeys {
			s.editor = s.editor[:len(s.editor)-1]
		}
		s.draw(false)
	case keys == "\r":
		s.enters++
		if s.enters <= s.lostEnters || s.editor == "" {
			return nil
		}
		s.draw(true)
		if !s.hangs {
			n, _ := strconv.Atoi(startMarker.FindStringSubmatch(s.editor)[1])
			s.lines = append(s.lines, closed(fmt.Sprintf("started-%d", n+1)))
			s.started = append(s.started, s.editor)
		}
		s.editor, s.drawn = "", nil
	default:
		return fmt.Errorf("scripted shell: unexpected keys %q", keys)
	}
	return nil
}

func (s *scriptedShell) WaitLineFunc(ctx context.Context, mark int, what string, ok func(string) bool) (string, error) {
	for _, l := range s.lines[mark:] {
		if ok(l) {
			return l, nil
		}
	}
	return "", fmt.Errorf("no %s: %w", what, context.DeadlineExceeded)
}

func (s *scriptedShell) LinesSince(mark int) []string { return slices.Clone(s.lines[mark:]) }

// Command retypes a line that was not drawn whole, even where the editor
// skips rows drawn before the retry; it presses Enter again only when the
// editor never took the line, never retypes a line it pressed Enter under,
// and says which of the two failed.
func TestCommandEnter(t *testing.T) {
	const cmd = "wget -O /data/pqbranch.json http://198.18.1.10:1/ && reload"
	for _, tc := range []struct {
		name       string
		shell      scriptedShell
		wantTyped  int
		wantEnters int
		wantErr    string // "" for a started line
	}{
		{"taken", scriptedShell{}, 1, 1, ""},
		{"a key lost, retyped over rows drawn before", scriptedShell{lostKeys: 1}, 2, 1, ""},
		{"first Enter lost", scriptedShell{lostEnters: 1}, 1, 2, ""},
		{"every Enter lost", scriptedShell{lostEnters: 2}, 1, 2, "the editor did not take the line"},
		{"shell hangs", scriptedShell{hangs: true}, 1, 1, "the editor took the line, but the shell did not start it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.shell
			err := typeCommand(context.Background(), &s, cmd, typeTries)
			if s.typed != tc.wantTyped || s.enters != tc.wantEnters {
				t.Errorf("typed the line %d times and pressed Enter %d times; want %d and %d", s.typed, s.enters, tc.wantTyped, tc.wantEnters)
			}
			if tc.wantErr == "" {
				if err != nil || len(s.started) != 1 || !strings.HasSuffix(s.started[0], "; "+cmd) {
					t.Errorf("err %v, started %q; want the line started once", err, s.started)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "> echo started-") {
				t.Errorf("err %v; want %q and the console", err, tc.wantErr)
			}
			if len(s.started) != 0 {
				t.Errorf("started %q; want nothing", s.started)
			}
		})
	}
}

// The console is the guest's output: readable and drawnLine take any
// bytes without panicking, and drawnLine accepts only a drawing that
// starts with the prompt.
func FuzzConsole(f *testing.F) {
	f.Add("update check", editing("update check"))
	f.Add("echo aaaa bbbb cccc dddd", firstRow("echo aaaa bbbb")+"\n"+cursorDown+lastRow("cccc dddd"))
	f.Add("x", "\x1b[1B\x1b[1B> x\n\x1b[0D\x1b[2K"+taken("x")+"\n"+closed("started-1"))
	f.Fuzz(func(t *testing.T, cmd, console string) {
		lines := strings.Split(console, "\n")
		readable(lines)
		drawn, sawPrompt := drawnLine(cmd), false
		for _, l := range lines {
			sawPrompt = sawPrompt || isPrompt(plain(lastFrame(l)))
			if drawn(l) && !sawPrompt {
				t.Fatalf("accepted %q for %q before any prompt", l, cmd)
			}
		}
	})
}
