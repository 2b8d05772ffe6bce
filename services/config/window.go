package config

import (
	"fmt"
	"strings"
	"time"
)

// Window is a weekly (or daily) maintenance window in local appliance time.
type Window struct {
	Daily      bool
	Day        time.Weekday
	Start, End time.Duration // since midnight; End < Start wraps past midnight
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow parses "Sun 02:00-04:00" or "daily 02:00-04:00".
func ParseWindow(s string) (Window, error) {
	bad := fmt.Errorf(`expected "<Mon..Sun|daily> HH:MM-HH:MM" like "Sun 02:00-04:00", got %q`, s)
	day, span, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return Window{}, bad
	}
	var w Window
	if d := strings.ToLower(day); d == "daily" {
		w.Daily = true
	} else if wd, ok := weekdays[d]; ok {
		w.Day = wd
	} else {
		return Window{}, bad
	}
	from, to, ok := strings.Cut(strings.TrimSpace(span), "-")
	if !ok {
		return Window{}, bad
	}
	var err error
	if w.Start, err = clock(from); err != nil {
		return Window{}, bad
	}
	if w.End, err = clock(to); err != nil || w.End == w.Start {
		return Window{}, bad
	}
	return w, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Contains reports whether t falls inside the window.
func (w Window) Contains(t time.Time) bool {
	since := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute
	day := t.Weekday()
	if w.End > w.Start {
		return (w.Daily || day == w.Day) && since >= w.Start && since < w.End
	}
	// Wraps past midnight: the tail belongs to the next day.
	if since >= w.Start {
		return w.Daily || day == w.Day
	}
	return since < w.End && (w.Daily || day == (w.Day+1)%7)
}
