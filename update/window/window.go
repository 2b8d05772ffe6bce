// Package window is the maintenance window of an appliance: when an update
// may reboot it. Downloads happen at any time; only the reboot into the new
// slot waits for the window.
//
// A window opens at a wall-clock time of its zone (Start), stays open for
// Duration, on the listed days of the week (all days when none are listed),
// and never lets a reboot happen on an embargo date. Each device reboots at a
// pseudo-random moment inside the window, derived from its id and the date of
// the occurrence, so a fleet does not reboot in the same second (Flatcar's
// known pain) and a device that restarts keeps its moment instead of rolling
// a new one.
package window

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	// The appliance has no /usr/share/zoneinfo: embed the database so any
	// IANA zone an operator names can be loaded.
	_ "time/tzdata"
)

// Window is a maintenance window. The zero Window means "no window": reboot
// at any time. Parse builds valid windows; a hand-built one should pass
// Validate.
type Window struct {
	// Start is the wall-clock time the window opens, as an offset from
	// midnight in whole minutes: 0..23:59.
	Start time.Duration
	// Duration is how long the window stays open in wall-clock time, in whole
	// minutes, 1m..24h. A window may run past midnight into the next day.
	Duration time.Duration
	// Days are the days of the week on which the window opens (the day of its
	// Start, so "Sat 23:00-01:00" runs into Sunday). Empty: every day.
	Days []time.Weekday
	// Embargo dates are days in Location on which no reboot may happen, nor
	// the time a reboot needs after it (see Next).
	Embargo []Date
	// Location is the zone of Start, Days and Embargo. Nil means UTC.
	Location *time.Location
}

// Date is a calendar day, as in an embargo "2026-12-24".
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// ParseDate parses "YYYY-MM-DD".
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || t.Format(time.DateOnly) != s {
		return Date{}, fmt.Errorf(`expected a date "YYYY-MM-DD" like "2026-12-24", got %s`, quote(s))
	}
	return dateOf(t), nil
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

func dateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// civil is midnight of d as a UTC time: a calendar reading with no zone.
func (d Date) civil() time.Time { return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC) }

func (d Date) addDays(n int) Date    { return dateOf(d.civil().AddDate(0, 0, n)) }
func (d Date) weekday() time.Weekday { return d.civil().Weekday() }
func (d Date) compare(e Date) int    { return d.civil().Compare(e.civil()) }

// valid reports whether d is a real calendar day (not February 30th).
func (d Date) valid() bool { return dateOf(d.civil()) == d }

func (w Window) loc() *time.Location {
	if w.Location == nil {
		return time.UTC
	}
	return w.Location
}

// IsZero reports whether w is no window at all: any time is fine.
func (w Window) IsZero() bool { return w.Duration == 0 }

// Validate checks a hand-built window; Parse only returns valid ones.
func (w Window) Validate() error {
	if w.IsZero() {
		if w.Start != 0 || len(w.Days) != 0 || len(w.Embargo) != 0 {
			return fmt.Errorf("window: start, days or embargo set without a duration")
		}
		return nil
	}
	if w.Start < 0 || w.Start >= 24*time.Hour || w.Start%time.Minute != 0 {
		return fmt.Errorf("window: start %v: expected whole minutes from 00:00 to 23:59", w.Start)
	}
	if w.Duration < time.Minute || w.Duration > 24*time.Hour || w.Duration%time.Minute != 0 {
		return fmt.Errorf("window: duration %v: expected whole minutes from 1m to 24h", w.Duration)
	}
	seen := map[time.Weekday]bool{}
	for _, d := range w.Days {
		if d < time.Sunday || d > time.Saturday || seen[d] {
			return fmt.Errorf("window: days: expected each of Sunday..Saturday at most once, got %v", w.Days)
		}
		seen[d] = true
	}
	for _, e := range w.Embargo {
		if !e.valid() {
			return fmt.Errorf("window: embargo: %+v is not a calendar date", e)
		}
	}
	return nil
}

// occurrence is one opening of the window: [open, close).
type occurrence struct {
	date        Date // the day it opens, in the window's zone
	open, close time.Time
}

// occurrence returns the window's opening on day d, false if the window does
// not open that day.
//
// Wall-clock times are turned into instants by firstInstant, so on a DST day
// the window covers what its wall-clock span covers: on a spring-forward day
// 02:00-04:00 lasts one hour (02:00-03:00 does not exist), on a fall-back day
// it lasts three (02:00-03:00 happens twice).
func (w Window) occurrence(d Date) (occurrence, bool) {
	if len(w.Days) > 0 && !slices.Contains(w.Days, d.weekday()) {
		return occurrence{}, false
	}
	loc := w.loc()
	return occurrence{
		date:  d,
		open:  firstInstant(d, w.Start, loc),
		close: firstInstant(d, w.Start+w.Duration, loc),
	}, true
}

// firstInstant returns the first instant at which the clock in loc reads
// midnight of d plus offset (offset may run into the next day). When a DST
// jump skips that reading, it returns the instant of the jump: the first
// moment the clock reads a later time.
//
// time.Date leaves both cases unspecified, and in practice resolves them
// differently east and west of Greenwich, so the choice is made here.
func firstInstant(d Date, offset time.Duration, loc *time.Location) time.Time {
	wall := d.civil().Add(offset) // the reading we want, as a zone-less time
	t := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, loc)
	// The reading can only occur under the offset in force at t or on
	// either side of the transitions bounding t's zone period.
	start, end := t.ZoneBounds()
	probes := []time.Time{t}
	if !start.IsZero() {
		probes = append(probes, start.Add(-time.Second))
	}
	if !end.IsZero() {
		probes = append(probes, end)
	}
	var first time.Time
	for _, p := range probes {
		_, off := p.Zone()
		c := wall.Add(-time.Duration(off) * time.Second).In(loc)
		if reading(c) == wall && (first.IsZero() || c.Before(first)) {
			first = c
		}
	}
	if !first.IsZero() {
		return first
	}
	// Skipped by a jump: t landed on one side of the gap; the jump is the
	// edge of t's zone period on the other side.
	if reading(t).After(wall) {
		return start.In(loc)
	}
	return end.In(loc)
}

// reading is t's wall clock as a zone-less time.
func reading(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

func (w Window) embargoed(d Date) bool { return slices.Contains(w.Embargo, d) }

// Contains reports whether a reboot at t is allowed: t is inside an
// occurrence of the window and not on an embargo date. The zero Window
// contains every t.
func (w Window) Contains(t time.Time) bool {
	if w.IsZero() {
		return true
	}
	t = t.In(w.loc())
	today := dateOf(t)
	if w.embargoed(today) {
		return false
	}
	// An occurrence lasts at most 24 h of wall clock (25 h of real time on a
	// fall-back day), so only the last two days' can still be open.
	for back := 2; back >= 0; back-- {
		if o, ok := w.occurrence(today.addDays(-back)); ok && !t.Before(o.open) && t.Before(o.close) {
			return true
		}
	}
	return false
}

// span is a half-open interval of instants [from, to).
type span struct{ from, to time.Time }

// reboots returns the moments in o at which a reboot may start: the
// reboot and the need after it (trial, health check, rollback) end by the
// close, and touch no embargo day.
func (w Window) reboots(o occurrence, need time.Duration) []span {
	last := o.close.Add(-need)
	if !last.After(o.open) {
		return nil
	}
	spans := []span{{o.open, last}}
	loc := w.loc()
	for _, e := range w.Embargo {
		from := firstInstant(e, 0, loc).Add(-need)
		to := firstInstant(e.addDays(1), 0, loc)
		var kept []span
		for _, s := range spans {
			if s.from.Before(from) {
				kept = append(kept, span{s.from, minTime(s.to, from)})
			}
			if s.to.After(to) {
				kept = append(kept, span{maxTime(s.from, to), s.to})
			}
		}
		spans = kept
	}
	return spans
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// seed is the device's stable random number for the occurrence opening on d.
func seed(deviceID string, d Date) uint64 {
	h := sha256.Sum256([]byte("pqbranch window\x00" + deviceID + "\x00" + d.String()))
	return binary.BigEndian.Uint64(h[:8])
}

// pick places seed uniformly (to the second) over the spans.
func pick(spans []span, seed uint64) time.Time {
	var total time.Duration
	for _, s := range spans {
		total += s.to.Sub(s.from)
	}
	var k time.Duration
	if secs := uint64(total / time.Second); secs > 0 {
		k = time.Duration(seed%secs) * time.Second
	}
	for _, s := range spans {
		if n := s.to.Sub(s.from); k < n {
			return s.from.Add(k)
		}
		k -= s.to.Sub(s.from)
	}
	return spans[0].from // unreachable: k < total
}

// Next returns the moment to reboot for an update that needs need after the
// reboot (boot, trial, health check) before the window closes, and when that
// occurrence closes. The moment lies in the first occurrence at or after now
// that can fit need, at a point derived from deviceID and the occurrence's
// date, so devices spread over the window and a device that restarts gets the
// same moment. If that point has already passed but the occurrence can still
// fit need (the device was off, or the update arrived late), it returns now.
// Embargo days are skipped. ok is false when no occurrence within the next
// weeks can fit need.
//
// The zero Window returns now, a zero closes, and true.
func (w Window) Next(now time.Time, deviceID string, need time.Duration) (at, closes time.Time, ok bool) {
	if w.IsZero() {
		return now, time.Time{}, true
	}
	need = max(need, 0)
	loc := w.loc()
	now = now.In(loc)
	// Every week has an occurrence; each embargo date removes at most two
	// and a DST day may shorten one: past this horizon nothing will fit.
	horizon := 7 * (2*len(w.Embargo) + 3)
	first := dateOf(now).addDays(-2)
	for i := 0; i <= horizon; i++ {
		o, opens := w.occurrence(first.addDays(i))
		if !opens || !o.close.After(now) {
			continue
		}
		spans := w.reboots(o, need)
		if len(spans) == 0 {
			continue
		}
		if p := pick(spans, seed(deviceID, o.date)); !p.Before(now) {
			return p, o.close, true
		}
		for _, s := range spans {
			if s.to.After(now) {
				return maxTime(s.from, now), o.close, true
			}
		}
	}
	return time.Time{}, time.Time{}, false
}

// dayNames are the days as the legacy string and String write them.
var dayNames = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// String describes the window for status output, e.g.
// "Sun 02:00-04:00 Europe/Berlin, embargo 2026-12-24".
func (w Window) String() string {
	if w.IsZero() {
		return "any time"
	}
	var b strings.Builder
	if len(w.Days) == 0 {
		b.WriteString("daily")
	}
	for i, d := range w.Days {
		if i > 0 {
			b.WriteByte(',')
		}
		if d >= time.Sunday && d <= time.Saturday {
			b.WriteString(dayNames[d])
		} else {
			fmt.Fprintf(&b, "%d", int(d))
		}
	}
	end := (w.Start + w.Duration) % (24 * time.Hour)
	fmt.Fprintf(&b, " %s-%s", clock(w.Start), clock(end))
	if w.Duration == 24*time.Hour {
		b.WriteString(" (24h)")
	}
	b.WriteString(" " + w.loc().String())
	for i, e := range w.Embargo {
		if i == 0 {
			b.WriteString(", embargo")
		}
		b.WriteString(" " + e.String())
	}
	return b.String()
}

// clock formats an offset from midnight as "HH:MM".
func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
