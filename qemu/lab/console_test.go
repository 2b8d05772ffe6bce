package lab

import (
	"slices"
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

// A failed test shows the box's console through Readable: every drawing of
// a typed line but the last is dropped, escape sequences go, and log lines
// and command output stay where they were.
func TestReadable(t *testing.T) {
	frame := func(text string) string {
		return "\x1b[0D\x1b[1A\x1b[0D\x1b[2K\x1b[40m\x1b[37m> \x1b[0m\x1b[0m\x1b[40m" + text + "\x1b[0m\x1b[40m\x1b[7m \x1b[0m"
	}
	const (
		help    = "\x1b[90mM-?\x1b[0m \x1b[90mtoggle key help\x1b[0m\x1b[90m • \x1b[0m\x1b[90mC-d\x1b[0m \x1b[90merase/stop\x1b[0m"
		wrapped = "\x1b[40m\x1b[37m  \x1b[0m\x1b[0m\x1b[40mcccc dddd\x1b[0m\x1b[40m\x1b[7m \x1b[0m\x1b[0m\x1b[40m\x1b[0m\x1b[40m           \x1b[0m"
		logLine = "\x1b[0Dtime=2026-12-05T12:01:39.409Z level=INFO msg=exchange svc=tunnel"
	)
	got := Readable([]string{
		"init: watchdog armed",
		frame(""), help,
		frame("e"), frame("ec"), logLine, frame("echo aaaa bbbb"), wrapped, help,
		"\x1b[2K\x1b[?25hok-2",
		frame(""), help,
	})
	want := []string{
		"init: watchdog armed",
		"> ec", // the last drawing before the log line
		"time=2026-12-05T12:01:39.409Z level=INFO msg=exchange svc=tunnel",
		"> echo aaaa bbbb", "  cccc dddd", "M-? toggle key help • C-d erase/stop",
		"ok-2",
		">", "M-? toggle key help • C-d erase/stop",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Readable:\n got %q\nwant %q", got, want)
	}
}
