package window

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func mustParse(t testing.TB, raw string) Window {
	t.Helper()
	w, err := Parse(json.RawMessage(raw))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// at parses "2006-01-02 15:04" (or with seconds) in loc.
func at(t testing.TB, loc *time.Location, s string) time.Time {
	t.Helper()
	layout := "2006-01-02 15:04"
	if len(s) > len(layout) {
		layout += ":05"
	}
	tm, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestContains(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	cases := []struct {
		window string
		loc    *time.Location
		at     string // in loc; 2024-03-03 is a Sunday
		in     bool
	}{
		{`"Sun 02:00-04:00"`, time.UTC, "2024-03-03 02:00", true},
		{`"Sun 02:00-04:00"`, time.UTC, "2024-03-03 03:59:59", true},
		{`"Sun 02:00-04:00"`, time.UTC, "2024-03-03 04:00", false},
		{`"Sun 02:00-04:00"`, time.UTC, "2024-03-03 01:59:59", false},
		{`"Sun 02:00-04:00"`, time.UTC, "2024-03-04 03:00", false},
		{`"Sat 23:00-01:00"`, time.UTC, "2024-03-03 00:30", true},  // the Saturday opening runs into Sunday
		{`"Sat 23:00-01:00"`, time.UTC, "2024-03-02 00:30", false}, // Friday's would, but there is none
		{`"Sat 23:00-01:00"`, time.UTC, "2024-03-02 23:00", true},
		{`"Sat 23:00-01:00"`, time.UTC, "2024-03-03 01:00", false},
		{`"daily 03:00-04:00"`, time.UTC, "2024-03-06 03:59", true},
		{`"daily 22:00-02:00"`, time.UTC, "2024-03-06 01:00", true},
		{`"daily 22:00-02:00"`, time.UTC, "2024-03-06 21:59", false},
		{`{"start_hour": 0, "duration_hours": 24, "days": ["mon"]}`, time.UTC, "2024-03-04 23:59", true},
		{`{"start_hour": 0, "duration_hours": 24, "days": ["mon"]}`, time.UTC, "2024-03-05 00:00", false},
		{`{"start_hour": 12, "duration_hours": 24, "days": ["mon"]}`, time.UTC, "2024-03-05 11:59", true},
		// Zones: 02:00 Berlin is 01:00 UTC in winter.
		{`"Sun 02:00-04:00 Europe/Berlin"`, time.UTC, "2024-03-03 01:00", true},
		{`"Sun 02:00-04:00 Europe/Berlin"`, time.UTC, "2024-03-03 03:00", false},
		{`"Sun 02:00-04:00 Europe/Berlin"`, berlin, "2024-03-03 03:00", true},
		// Embargo: no reboot on the day, even in the part of a window that wraps into it.
		{`{"start_hour": 23, "duration_hours": 3, "embargo": ["2024-03-06"]}`, time.UTC, "2024-03-05 23:30", true},
		{`{"start_hour": 23, "duration_hours": 3, "embargo": ["2024-03-06"]}`, time.UTC, "2024-03-06 00:30", false},
		{`{"start_hour": 23, "duration_hours": 3, "embargo": ["2024-03-06"]}`, time.UTC, "2024-03-06 23:30", false},
		{`{"start_hour": 23, "duration_hours": 3, "embargo": ["2024-03-06"]}`, time.UTC, "2024-03-07 01:30", true},
		{`{"start_hour": 2, "duration_hours": 2, "embargo": ["2024-03-06"], "timezone": "Europe/Berlin"}`, time.UTC, "2024-03-06 01:30", false},
		{`null`, time.UTC, "2024-03-06 12:00", true},
	}
	for _, tc := range cases {
		w := mustParse(t, tc.window)
		if got := w.Contains(at(t, tc.loc, tc.at)); got != tc.in {
			t.Errorf("%s contains %s %v = %v, want %v", tc.window, tc.at, tc.loc, got, tc.in)
		}
	}
}

func TestNext(t *testing.T) {
	utc := time.UTC
	cases := []struct {
		name   string
		window string
		now    string
		need   time.Duration
		// The reboot moment lies in [from, to]; closes is the occurrence's close.
		from, to, closes string
	}{
		{"later today", `"daily 02:00-04:00"`, "2026-03-04 00:10", 30 * time.Minute, "2026-03-04 02:00", "2026-03-04 03:30", "2026-03-04 04:00"},
		{"after today's, tomorrow", `"daily 02:00-04:00"`, "2026-03-04 04:00", 30 * time.Minute, "2026-03-05 02:00", "2026-03-05 03:30", "2026-03-05 04:00"},
		{"across the week", `"Sun 02:00-04:00"`, "2026-03-08 05:00", 0, "2026-03-15 02:00", "2026-03-15 04:00", "2026-03-15 04:00"},
		{"saturday to sunday", `"Sun 02:00-04:00"`, "2026-03-07 23:00", 0, "2026-03-08 02:00", "2026-03-08 04:00", "2026-03-08 04:00"},
		{"wraps midnight", `"Sat 23:00-01:00"`, "2026-03-08 00:30", 45 * time.Minute, "2026-03-14 23:00", "2026-03-15 00:15", "2026-03-15 01:00"},
		{"rest too short", `"daily 02:00-04:00"`, "2026-03-04 03:40", 30 * time.Minute, "2026-03-05 02:00", "2026-03-05 03:30", "2026-03-05 04:00"},
		{"need fills the window", `"daily 02:00-04:00"`, "2026-03-04 01:00", 119 * time.Minute, "2026-03-04 02:00", "2026-03-04 02:01", "2026-03-04 04:00"},
		{"embargo skips", `{"start_hour": 2, "duration_hours": 2, "embargo": ["2026-03-04", "2026-03-05"]}`, "2026-03-04 01:00", 0, "2026-03-06 02:00", "2026-03-06 04:00", "2026-03-06 04:00"},
		{"embargo on the wrapped day", `{"start_hour": 22, "duration_hours": 4, "embargo": ["2026-03-05"]}`, "2026-03-04 21:00", 30 * time.Minute, "2026-03-04 22:00", "2026-03-04 23:30", "2026-03-05 02:00"},
		{"embargo before the wrap", `{"start_hour": 22, "duration_hours": 4, "embargo": ["2026-03-04"]}`, "2026-03-04 21:00", 30 * time.Minute, "2026-03-05 00:00", "2026-03-05 01:30", "2026-03-05 02:00"},
		{"zone", `"Sun 02:00-04:00 Europe/Berlin"`, "2026-03-07 12:00", 0, "2026-03-08 01:00", "2026-03-08 03:00", "2026-03-08 03:00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := mustParse(t, tc.window)
			now := at(t, utc, tc.now)
			got, closes, ok := w.Next(now, "device-1", tc.need)
			from, to := at(t, utc, tc.from), at(t, utc, tc.to)
			if !ok || got.Before(from) || got.After(to) {
				t.Fatalf("Next(%s, need %v) = %v, %v; want within %s..%s", tc.now, tc.need, got, ok, tc.from, tc.to)
			}
			if want := at(t, utc, tc.closes); !closes.Equal(want) {
				t.Errorf("closes %v, want %v", closes, want)
			}
			if !w.Contains(got) || got.Add(tc.need).After(closes) {
				t.Errorf("moment %v (+%v) is not inside the window closing %v", got, tc.need, closes)
			}
		})
	}
}

func TestNextNoWindow(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	if got, _, ok := (Window{}).Next(now, "d", time.Hour); !ok || !got.Equal(now) {
		t.Fatalf("Next = %v, %v; want now", got, ok)
	}
}

func TestNextNeverFits(t *testing.T) {
	w := mustParse(t, `"daily 02:00-04:00"`)
	if got, _, ok := w.Next(time.Now(), "d", 2*time.Hour+time.Minute); ok {
		t.Fatalf("a 2h window fits 2h01m at %v", got)
	}
	// Every day embargoed for a month: nothing within the horizon.
	w = mustParse(t, `{"start_hour": 2, "duration_hours": 2, "days": ["sun"], "embargo": ["2026-03-08", "2026-03-15"]}`)
	got, _, ok := w.Next(time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), "d", 0)
	if !ok || !got.After(time.Date(2026, 3, 22, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("got %v, %v; want 2026-03-22", got, ok)
	}
}

// TestNextLate: the device's own moment has passed (it was off, or the
// update arrived late) but the rest of the window fits need: go now, and
// only while it still fits.
func TestNextLate(t *testing.T) {
	w := mustParse(t, `"daily 02:00-04:00"`)
	day := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	own, _, _ := w.Next(day, "device-1", 30*time.Minute)
	now := own.Add(time.Minute)
	if got, _, ok := w.Next(now, "device-1", 30*time.Minute); !ok || !got.Equal(now) {
		t.Fatalf("late by a minute: Next = %v, want now %v", got, now)
	}
	now = time.Date(2026, 3, 4, 3, 30, 0, 0, time.UTC) // exactly need before the close
	if got, _, _ := w.Next(now, "device-1", 30*time.Minute); got.Equal(now) || got.Day() != 5 {
		t.Fatalf("at the last fitting second: Next = %v, want tomorrow", got)
	}
}

// TestNextStable: the moment depends on the device and the occurrence, not
// on when the device asks, so a restart does not move it.
func TestNextStable(t *testing.T) {
	w := mustParse(t, `{"start_hour": 1, "duration_hours": 3, "timezone": "Europe/Berlin"}`)
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	first, _, _ := w.Next(start, "device-42", 20*time.Minute)
	for now := start; now.Before(first); now = now.Add(7 * time.Minute) {
		if got, _, _ := w.Next(now, "device-42", 20*time.Minute); !got.Equal(first) {
			t.Fatalf("asked at %v: %v, asked at %v: %v", start, first, now, got)
		}
	}
	// Another day, another moment: a device is not always the first.
	moments := map[time.Duration]bool{}
	for d := range 30 {
		at, _, _ := w.Next(start.AddDate(0, 0, d), "device-42", 20*time.Minute)
		open := time.Date(at.Year(), at.Month(), at.Day(), 1, 0, 0, 0, at.Location())
		moments[at.Sub(open)] = true
	}
	if len(moments) < 25 {
		t.Fatalf("30 days gave only %d distinct moments", len(moments))
	}
}

// TestNextSpread: a fleet spreads over the whole window, not the first
// seconds of it.
func TestNextSpread(t *testing.T) {
	w := mustParse(t, `{"start_hour": 2, "duration_hours": 2, "days": ["sun"], "timezone": "America/New_York"}`)
	ny := w.Location
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	open := time.Date(2026, 6, 7, 2, 0, 0, 0, ny)
	const devices, need = 10000, 0
	var buckets [12]int // 10 minutes each
	for i := range devices {
		at, closes, ok := w.Next(now, fmt.Sprintf("pqb-%06d", i), need)
		if !ok || at.Before(open) || !at.Before(closes) {
			t.Fatalf("device %d: %v (closes %v) outside the window opening %v", i, at, closes, open)
		}
		buckets[at.Sub(open)/(10*time.Minute)]++
	}
	mean := devices / len(buckets)
	for i, n := range buckets {
		if n == 0 || n > 3*mean || n < mean/3 {
			t.Errorf("bucket %d (+%d min): %d devices, mean %d: %v", i, i*10, n, mean, buckets)
		}
	}
}

// TestNextDST: windows are wall-clock times of their zone. On a
// spring-forward day 02:00-04:00 has one hour, on a fall-back day three.
func TestNextDST(t *testing.T) {
	cases := []struct {
		name, zone, window string
		now                string // UTC
		need               time.Duration
		from, to, closes   string // UTC bounds of the moment, and the close
	}{
		// Berlin springs forward 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST).
		{"berlin spring fits", "Europe/Berlin", `"daily 02:00-04:00 Europe/Berlin"`, "2026-03-28 23:00", 30 * time.Minute, "2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 02:00"},
		{"berlin spring too short", "Europe/Berlin", `"daily 02:00-04:00 Europe/Berlin"`, "2026-03-28 23:00", 90 * time.Minute, "2026-03-30 00:00", "2026-03-30 00:30", "2026-03-30 02:00"},
		{"berlin spring skipped opening", "Europe/Berlin", `"daily 02:00-03:00 Europe/Berlin"`, "2026-03-28 23:00", 0, "2026-03-30 00:00", "2026-03-30 01:00", "2026-03-30 01:00"},
		// Berlin falls back 2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
		{"berlin fall long", "Europe/Berlin", `"daily 02:00-04:00 Europe/Berlin"`, "2026-10-24 22:00", 150 * time.Minute, "2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 03:00"},
		// New York springs forward 2026-03-08 at 07:00 UTC (02:00 EST -> 03:00 EDT).
		{"new york spring", "America/New_York", `{"start": "01:30", "duration_hours": 2, "timezone": "America/New_York"}`, "2026-03-08 05:00", 45 * time.Minute, "2026-03-08 06:30", "2026-03-08 06:45", "2026-03-08 07:30"},
		// New York falls back 2026-11-01 at 06:00 UTC (02:00 EDT -> 01:00 EST):
		// the window opens at the first 01:30 and closes at 02:30 EST.
		{"new york fall", "America/New_York", `{"start": "01:30", "duration_hours": 1, "timezone": "America/New_York"}`, "2026-11-01 04:00", 110 * time.Minute, "2026-11-01 05:30", "2026-11-01 05:40", "2026-11-01 07:30"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := mustParse(t, tc.window)
			from, to := at(t, time.UTC, tc.from), at(t, time.UTC, tc.to)
			closes := at(t, time.UTC, tc.closes)
			// Many devices, so the bounds are tested, not one lucky point.
			for i := range 200 {
				got, c, ok := w.Next(at(t, time.UTC, tc.now), fmt.Sprint("dev", i), tc.need)
				if !ok || got.Before(from) || !got.Before(to) || !c.Equal(closes) {
					t.Fatalf("dev%d: Next = %v (closes %v, ok %v); want %s..%s closing %s", i, got.UTC(), c.UTC(), ok, tc.from, tc.to, tc.closes)
				}
				if !w.Contains(got) {
					t.Fatalf("dev%d: %v not contained", i, got)
				}
			}
		})
	}
}

// TestNextEmbargoKeepsNeed: neither the reboot nor the time it needs after
// it touches an embargo day, in the window's zone.
func TestNextEmbargoKeepsNeed(t *testing.T) {
	w := mustParse(t, `{"start_hour": 22, "duration_hours": 6, "embargo": ["2026-12-24"], "timezone": "Europe/Berlin"}`)
	berlin := w.Location
	dayStart := time.Date(2026, 12, 24, 0, 0, 0, 0, berlin)
	dayEnd := time.Date(2026, 12, 25, 0, 0, 0, 0, berlin)
	now := time.Date(2026, 12, 23, 12, 0, 0, 0, berlin)
	for i := range 500 {
		got, _, ok := w.Next(now, fmt.Sprint("dev", i), time.Hour)
		if !ok || got.Add(time.Hour).After(dayStart) && got.Before(dayEnd) {
			t.Fatalf("dev%d: reboot %v +1h touches the embargo day", i, got)
		}
		if got.Before(now) || got.After(time.Date(2026, 12, 25, 3, 0, 0, 0, berlin)) {
			t.Fatalf("dev%d: %v is not in the 23rd's or the 24th's opening", i, got)
		}
	}
}

// TestNextProperties checks Next against Contains for random windows,
// times and needs: the moment is never before now, is inside the window,
// leaves need before the close, avoids embargo days, and is stable.
func TestNextProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3000 {
		w := randomWindow(r)
		now := base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		need := time.Duration(r.IntN(180)) * time.Minute
		got, closes, ok := w.Next(now, fmt.Sprint("dev", i), need)
		if !ok {
			if need < w.Duration-time.Hour {
				t.Fatalf("%v from %v need %v: nothing found", w, now, need)
			}
			continue
		}
		if got.Before(now) || !w.Contains(got) || got.Add(need).After(closes) {
			t.Fatalf("%v from %v need %v: %v closing %v", w, now, need, got, closes)
		}
		if len(w.Embargo) == 0 && !w.Contains(closes.Add(-time.Nanosecond)) {
			t.Fatalf("%v from %v need %v: %v closing %v", w, now, need, got, closes)
		}
		for _, e := range w.Embargo {
			s := firstInstant(e, 0, w.loc())
			if got.Add(need).After(s) && got.Before(firstInstant(e.addDays(1), 0, w.loc())) {
				t.Fatalf("%v: %v +%v touches embargo %v", w, got, need, e)
			}
		}
		// Asking again at the chosen moment gives the same moment.
		if again, _, _ := w.Next(got, fmt.Sprint("dev", i), need); !again.Equal(got) {
			t.Fatalf("%v: asked at %v got %v", w, got, again)
		}
	}
}
