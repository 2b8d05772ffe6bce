package window

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// same compares windows, zones by name (LoadLocation returns a new pointer
// each time; nil is UTC).
func same(a, b Window) bool {
	if a.loc().String() != b.loc().String() {
		return false
	}
	a.Location, b.Location = nil, nil
	return reflect.DeepEqual(a, b)
}

func TestParseGood(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	cases := []struct {
		raw    string
		want   Window
		status string
	}{
		{``, Window{}, "any time"},
		{`null`, Window{}, "any time"},
		{`""`, Window{}, "any time"},
		{`"Sun 02:00-04:00"`, Window{Start: 2 * time.Hour, Duration: 2 * time.Hour, Days: []time.Weekday{time.Sunday}}, "Sun 02:00-04:00 UTC"},
		{`"daily 03:00-04:00"`, Window{Start: 3 * time.Hour, Duration: time.Hour}, "daily 03:00-04:00 UTC"},
		{`"sat 23:00-01:00"`, Window{Start: 23 * time.Hour, Duration: 2 * time.Hour, Days: []time.Weekday{time.Saturday}}, "Sat 23:00-01:00 UTC"},
		{`"Sun 02:30-04:00"`, Window{Start: 150 * time.Minute, Duration: 90 * time.Minute, Days: []time.Weekday{time.Sunday}}, "Sun 02:30-04:00 UTC"},
		{`"Sun 02:00-04:00 Europe/Berlin"`, Window{Start: 2 * time.Hour, Duration: 2 * time.Hour, Days: []time.Weekday{time.Sunday}, Location: berlin}, "Sun 02:00-04:00 Europe/Berlin"},
		{`{"start_hour": 2, "duration_hours": 2, "days": ["sun"], "embargo": ["2026-12-24"], "timezone": "Europe/Berlin"}`,
			Window{Start: 2 * time.Hour, Duration: 2 * time.Hour, Days: []time.Weekday{time.Sunday}, Embargo: []Date{{2026, 12, 24}}, Location: berlin},
			"Sun 02:00-04:00 Europe/Berlin, embargo 2026-12-24"},
		{`{"start": "22:15", "duration": "3h45m", "days": ["Saturday", "fri"], "embargo": ["2026-12-31", "2026-12-24", "2026-12-31"]}`,
			Window{Start: 22*time.Hour + 15*time.Minute, Duration: 3*time.Hour + 45*time.Minute, Days: []time.Weekday{time.Friday, time.Saturday}, Embargo: []Date{{2026, 12, 24}, {2026, 12, 31}}},
			"Fri,Sat 22:15-02:00 UTC, embargo 2026-12-24 2026-12-31"},
		{`{"start_hour": 0, "duration_hours": 24, "days": [], "timezone": null}`, Window{Start: 0, Duration: 24 * time.Hour}, "daily 00:00-00:00 (24h) UTC"},
	}
	for _, tc := range cases {
		w, err := Parse(json.RawMessage(tc.raw))
		if err != nil {
			t.Errorf("%s: %v", tc.raw, err)
			continue
		}
		if !same(w, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.raw, w, tc.want)
		}
		if got := w.String(); got != tc.status {
			t.Errorf("%s: String() = %q, want %q", tc.raw, got, tc.status)
		}
		if err := w.Validate(); err != nil {
			t.Errorf("%s: parsed window invalid: %v", tc.raw, err)
		}
	}
}

func TestParseBad(t *testing.T) {
	cases := []struct {
		raw, field, expect string
	}{
		{`"Sunday 2am"`, "", `expected "<Sun..Sat|daily> HH:MM-HH:MM [time zone]"`},
		{`"Sun"`, "", "expected"},
		{`"Sun 02:00"`, "", "expected"},
		{`"Sun 02:00-02:00"`, "", "expected"},
		{`"Xyz 01:00-02:00"`, "", "expected"},
		{`"Sun 25:00-26:00"`, "", "expected"},
		{`"Sun 2:00-4:00"`, "", "expected"},
		{`"Sun 02:00-04:00 Mars/Olympus"`, "", `expected an IANA time zone like "Europe/Berlin" or "UTC", got "Mars/Olympus"`},
		{`"Sun 02:00-04:00 Local"`, "", "expected an IANA time zone"},
		{`"Sun 02:00-04:00 UTC extra"`, "", "expected"},
		{`7`, "", `expected a string like "Sun 02:00-04:00" or an object like {"start_hour"`},
		{`["Sun 02:00-04:00"]`, "", "got a list"},
		{`{"start_hour": 2, "duration_hours": 2, "dayz": ["sun"]}`, "dayz", "unknown field; expected one of: start_hour, start, duration_hours, duration, days, embargo, timezone"},
		{`{"duration_hours": 2}`, "start_hour", "required: the hour the window opens"},
		{`{"start_hour": 2}`, "duration_hours", "required: how long the window stays open"},
		{`{"start_hour": 24, "duration_hours": 2}`, "start_hour", "expected a whole number 0..23 (the hour the window opens), got 24"},
		{`{"start_hour": -1, "duration_hours": 2}`, "start_hour", "got -1"},
		{`{"start_hour": 2.5, "duration_hours": 2}`, "start_hour", "got 2.5"},
		{`{"start_hour": "2", "duration_hours": 2}`, "start_hour", `got "2"`},
		{`{"start_hour": 2, "start": "02:00", "duration_hours": 2}`, "start", "not both"},
		{`{"start": "2:30", "duration_hours": 2}`, "start", `expected "HH:MM" from "00:00" to "23:59", got "2:30"`},
		{`{"start": "24:00", "duration_hours": 2}`, "start", `got "24:00"`},
		{`{"start_hour": 2, "duration_hours": 0}`, "duration_hours", "expected a whole number of hours 1..24, got 0"},
		{`{"start_hour": 2, "duration_hours": 25}`, "duration_hours", "got 25"},
		{`{"start_hour": 2, "duration_hours": 2, "duration": "2h"}`, "duration", "not both"},
		{`{"start_hour": 2, "duration": "90s"}`, "duration", `expected whole minutes from "1m" to "24h" like "1h30m", got "90s"`},
		{`{"start_hour": 2, "duration": "25h"}`, "duration", `got "25h"`},
		{`{"start_hour": 2, "duration": "soon"}`, "duration", `got "soon"`},
		{`{"start_hour": 2, "duration_hours": 2, "days": "sun"}`, "days", `expected a list of days like ["sat", "sun"]`},
		{`{"start_hour": 2, "duration_hours": 2, "days": ["sun", "sundae"]}`, "days[1]", `expected a day "sun".."sat" or "sunday".."saturday", got "sundae"`},
		{`{"start_hour": 2, "duration_hours": 2, "days": ["sun", 1]}`, "days[1]", "got 1"},
		{`{"start_hour": 2, "duration_hours": 2, "days": ["sun", "Sunday"]}`, "days[1]", "expected each day once, got Sun again"},
		{`{"start_hour": 2, "duration_hours": 2, "embargo": "2026-12-24"}`, "embargo", `expected a list of dates like ["2026-12-24"]`},
		{`{"start_hour": 2, "duration_hours": 2, "embargo": ["2026-12-24", "2026-13-01"]}`, "embargo[1]", `expected a date "YYYY-MM-DD" like "2026-12-24", got "2026-13-01"`},
		{`{"start_hour": 2, "duration_hours": 2, "embargo": ["2026-02-30"]}`, "embargo[0]", `got "2026-02-30"`},
		{`{"start_hour": 2, "duration_hours": 2, "embargo": ["24.12.2026"]}`, "embargo[0]", `got "24.12.2026"`},
		{`{"start_hour": 2, "duration_hours": 2, "embargo": [20261224]}`, "embargo[0]", "got 20261224"},
		{`{"start_hour": 2, "duration_hours": 2, "timezone": "Berlin"}`, "timezone", `expected an IANA time zone like "Europe/Berlin" or "UTC", got "Berlin"`},
		{`{"start_hour": 2, "duration_hours": 2, "timezone": ""}`, "timezone", `got ""`},
		{`{"start_hour": 2, "duration_hours": 2, "timezone": 1}`, "timezone", "got 1"},
		{`{"start_hour": 2, "duration_hours": 2, "timezone": "Local"}`, "timezone", `got "Local"`},
	}
	for _, tc := range cases {
		w, err := Parse(json.RawMessage(tc.raw))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: got %+v, %v; want a *ParseError", tc.raw, w, err)
			continue
		}
		found := false
		for _, p := range pe.Problems {
			found = found || p.Field == tc.field && strings.Contains(p.Expected, tc.expect)
		}
		if !found {
			t.Errorf("%s: want field %q with %q, got %v", tc.raw, tc.field, tc.expect, err)
		}
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(json.RawMessage(`{"start_hour": 30, "duration": "1s", "days": ["x"], "embargo": ["y"], "timezone": "z", "b": 1, "a": 2}`))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	var got []string
	for _, p := range pe.Problems {
		got = append(got, p.Field)
	}
	want := []string{"start_hour", "duration", "days[0]", "embargo[0]", "timezone", "a", "b"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields %v, want %v (all of them, in field order)", got, want)
	}
}

func randomWindow(r *rand.Rand) Window {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"}
	w := Window{
		Start:    time.Duration(r.IntN(24*60)) * time.Minute,
		Duration: time.Duration(1+r.IntN(24*60)) * time.Minute,
	}
	for d := time.Sunday; d <= time.Saturday; d++ {
		if r.IntN(3) == 0 {
			w.Days = append(w.Days, d)
		}
	}
	day := Date{2026, 1, 1}
	for range r.IntN(4) {
		day = day.addDays(1 + r.IntN(20))
		w.Embargo = append(w.Embargo, day)
	}
	loc, _ := time.LoadLocation(zones[r.IntN(len(zones))])
	w.Location = loc
	return w
}

// TestMarshalRoundTrip: every valid window survives MarshalJSON and Parse,
// and so does every legacy string.
func TestMarshalRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		w := randomWindow(r)
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatalf("%v: %v", w, err)
		}
		var back Window
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !same(w, back) {
			t.Fatalf("%s: got %+v, want %+v", b, back, w)
		}
	}
	if b, _ := json.Marshal(Window{}); string(b) != "null" {
		t.Errorf("zero window marshals as %s", b)
	}
	if _, err := json.Marshal(Window{Start: time.Hour, Duration: 90 * time.Second}); err == nil {
		t.Error("invalid window marshalled")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`"Sun 02:00-04:00"`, `"daily 23:30-00:15 America/New_York"`, `null`, `""`,
		`{"start_hour": 2, "duration_hours": 2, "days": ["sun"], "embargo": ["2026-12-24"], "timezone": "Europe/Berlin"}`,
		`{"start": "02:30", "duration": "1h30m", "days": ["Monday", "tue"]}`,
		`{"start_hour": 1e300, "duration_hours": -0, "days": [null], "embargo": [{}]}`,
		`{"timezone": "../../etc/passwd"}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := Parse(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("error %T without problems: %v", err, err)
			}
			return
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("accepted an invalid window %+v: %v", w, err)
		}
		_ = w.String()
		if !w.IsZero() {
			m, err := json.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(m)
			if err != nil || !same(w, back) {
				t.Fatalf("%s: round trip %+v, %v", m, back, err)
			}
		}
		at, closes, ok := w.Next(now, "fuzz", 10*time.Minute)
		if ok && (at.Before(now) || !w.Contains(at) || (!w.IsZero() && at.Add(10*time.Minute).After(closes))) {
			t.Fatalf("%s: Next = %v (closes %v) is not a usable moment", b, at, closes)
		}
	})
}
