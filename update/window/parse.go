package window

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ParseError is a window that cannot be used, with every problem in it.
type ParseError struct {
	Problems []Problem
}

// Problem is one problem, located by the field of the object form it is in
// ("start_hour", "days[1]"); Field is empty for the value as a whole (a
// legacy string, or a value of the wrong kind).
type Problem struct {
	Field    string
	Expected string // what is wrong and what was expected
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Expected
	}
	return p.Field + ": " + p.Expected
}

func (e *ParseError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return "window: " + strings.Join(s, "; ")
}

type problems []Problem

func (p *problems) add(field, format string, a ...any) {
	*p = append(*p, Problem{Field: field, Expected: fmt.Sprintf(format, a...)})
}

// Fields of the object form, in the order error messages list them.
var fields = []string{"start_hour", "start", "duration_hours", "duration", "days", "embargo", "timezone"}

const (
	legacyForm = `"<Sun..Sat|daily> HH:MM-HH:MM [time zone]" like "Sun 02:00-04:00"`
	objectForm = `{"start_hour": 2, "duration_hours": 2, "days": ["sun"], "timezone": "Europe/Berlin"}`
)

// Parse reads a window as the configuration writes it: an object
//
//	{"start_hour": 2, "duration_hours": 2, "days": ["sun"], "embargo": ["2026-12-24"], "timezone": "Europe/Berlin"}
//
// or a string "Sun 02:00-04:00", "daily 03:00-04:00" (which may wrap past
// midnight) with an optional zone after it, "Sun 02:00-04:00 Europe/Berlin".
// For an opening that is not on the hour the object form takes
// "start": "HH:MM" instead of start_hour, and for a length that is not whole
// hours "duration": "1h30m" instead of duration_hours. Without a timezone
// the window is in UTC, the appliance's clock. Absent, null or "": no window.
// Errors are *ParseError.
func Parse(raw json.RawMessage) (Window, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return Window{}, nil
	}
	var p problems
	var w Window
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			p.add("", "invalid JSON string: %v", err)
			break
		}
		w = parseString(s, &p)
	case '{':
		w = parseObject(raw, &p)
	default:
		p.add("", "expected a string like %s or an object like %s, got %s", `"Sun 02:00-04:00"`, objectForm, kind(raw))
	}
	if len(p) > 0 {
		return Window{}, &ParseError{Problems: p}
	}
	return w, nil
}

// parseString reads the legacy "Sun 02:00-04:00" form.
func parseString(s string, p *problems) Window {
	if strings.TrimSpace(s) == "" {
		return Window{}
	}
	bad := func() Window {
		p.add("", "expected %s, got %s", legacyForm, quote(s))
		return Window{}
	}
	f := strings.Fields(s)
	if len(f) != 2 && len(f) != 3 {
		return bad()
	}
	var w Window
	if !strings.EqualFold(f[0], "daily") {
		d, ok := weekday(f[0])
		if !ok || len(f[0]) != 3 {
			return bad()
		}
		w.Days = []time.Weekday{d}
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return bad()
	}
	start, ok1 := parseClock(from)
	end, ok2 := parseClock(to)
	if !ok1 || !ok2 || start == end {
		return bad()
	}
	w.Start = start
	w.Duration = (end - start + 24*time.Hour) % (24 * time.Hour)
	if len(f) == 3 {
		loc, err := loadZone(f[2])
		if err != nil {
			p.add("", "%v", err)
			return Window{}
		}
		w.Location = loc
	}
	return w
}

func parseObject(raw json.RawMessage, p *problems) Window {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		p.add("", "invalid JSON object: %v", err)
		return Window{}
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(fields, k) {
			p.add(k, "unknown field; expected one of: %s", strings.Join(fields, ", "))
		}
	}
	// null stands for an absent field, as encoding/json treats it.
	has := func(k string) bool { v, ok := obj[k]; return ok && string(bytes.TrimSpace(v)) != "null" }
	var w Window

	switch {
	case has("start_hour") && has("start"):
		p.add("start", `expected either start_hour or start ("HH:MM"), not both`)
	case has("start_hour"):
		if h, ok := whole(obj["start_hour"]); !ok || h < 0 || h > 23 {
			p.add("start_hour", "expected a whole number 0..23 (the hour the window opens), got %s", kind(obj["start_hour"]))
		} else {
			w.Start = time.Duration(h) * time.Hour
		}
	case has("start"):
		var s string
		c, ok := time.Duration(0), json.Unmarshal(obj["start"], &s) == nil
		if ok {
			c, ok = parseClock(s)
		}
		if !ok {
			p.add("start", `expected "HH:MM" from "00:00" to "23:59", got %s`, kind(obj["start"]))
		}
		w.Start = c
	default:
		p.add("start_hour", `required: the hour the window opens, 0..23 (or "start": "HH:MM" to open at a minute)`)
	}

	switch {
	case has("duration_hours") && has("duration"):
		p.add("duration", `expected either duration_hours or duration ("1h30m"), not both`)
	case has("duration_hours"):
		if h, ok := whole(obj["duration_hours"]); !ok || h < 1 || h > 24 {
			p.add("duration_hours", "expected a whole number of hours 1..24, got %s", kind(obj["duration_hours"]))
		} else {
			w.Duration = time.Duration(h) * time.Hour
		}
	case has("duration"):
		var s string
		d, err := time.Duration(0), json.Unmarshal(obj["duration"], &s)
		if err == nil {
			d, err = time.ParseDuration(s)
		}
		if err != nil || d < time.Minute || d > 24*time.Hour || d%time.Minute != 0 {
			p.add("duration", `expected whole minutes from "1m" to "24h" like "1h30m", got %s`, kind(obj["duration"]))
		}
		w.Duration = d
	default:
		p.add("duration_hours", `required: how long the window stays open, 1..24 hours (or "duration": "1h30m")`)
	}

	if has("days") {
		var days []json.RawMessage
		if json.Unmarshal(obj["days"], &days) != nil {
			p.add("days", `expected a list of days like ["sat", "sun"] (empty: every day), got %s`, kind(obj["days"]))
		}
		for i, raw := range days {
			f := fmt.Sprintf("days[%d]", i)
			var s string
			d, ok := time.Weekday(0), json.Unmarshal(raw, &s) == nil
			if ok {
				d, ok = weekday(s)
			}
			switch {
			case !ok:
				p.add(f, `expected a day "sun".."sat" or "sunday".."saturday", got %s`, kind(raw))
			case slices.Contains(w.Days, d):
				p.add(f, "expected each day once, got %s again", dayNames[d])
			default:
				w.Days = append(w.Days, d)
			}
		}
		slices.Sort(w.Days)
	}

	if has("embargo") {
		var dates []json.RawMessage
		if json.Unmarshal(obj["embargo"], &dates) != nil {
			p.add("embargo", `expected a list of dates like ["2026-12-24"], got %s`, kind(obj["embargo"]))
		}
		for i, raw := range dates {
			f := fmt.Sprintf("embargo[%d]", i)
			var s string
			if json.Unmarshal(raw, &s) != nil {
				p.add(f, `expected a date "YYYY-MM-DD" like "2026-12-24", got %s`, kind(raw))
				continue
			}
			d, err := ParseDate(s)
			if err != nil {
				p.add(f, "%v", err)
				continue
			}
			if !slices.Contains(w.Embargo, d) {
				w.Embargo = append(w.Embargo, d)
			}
		}
		slices.SortFunc(w.Embargo, Date.compare)
	}

	if has("timezone") {
		var s string
		if json.Unmarshal(obj["timezone"], &s) != nil {
			p.add("timezone", `expected an IANA time zone like "Europe/Berlin" or "UTC", got %s`, kind(obj["timezone"]))
		} else if loc, err := loadZone(s); err != nil {
			p.add("timezone", "%v", err)
		} else {
			w.Location = loc
		}
	}
	// Problems come out in a stable order whatever the map's.
	slices.SortStableFunc(*p, func(a, b Problem) int { return fieldIndex(a.Field) - fieldIndex(b.Field) })
	return w
}

func fieldIndex(f string) int {
	name, _, _ := strings.Cut(f, "[")
	if i := slices.Index(fields, name); i >= 0 {
		return i
	}
	return len(fields)
}

// loadZone loads an IANA zone. "Local" is refused: on the appliance it is
// whatever the image happens to set, not what the operator meant.
func loadZone(name string) (*time.Location, error) {
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" || name == "Local" {
		return nil, fmt.Errorf(`expected an IANA time zone like "Europe/Berlin" or "UTC", got %s`, quote(name))
	}
	return loc, nil
}

// weekday reads "sun" or "sunday", in any case.
func weekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(s)
	for d := time.Sunday; d <= time.Saturday; d++ {
		if s == strings.ToLower(dayNames[d]) || s == strings.ToLower(d.String()) {
			return d, true
		}
	}
	return 0, false
}

// parseClock reads "HH:MM", 00:00..23:59, as an offset from midnight.
func parseClock(s string) (time.Duration, bool) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, false
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, true
}

// whole reads a JSON number that is a whole number (2, not 2.5 or "2").
func whole(raw json.RawMessage) (int, bool) {
	var f float64
	if json.Unmarshal(raw, &f) != nil || f != float64(int(f)) || f < -1e9 || f > 1e9 {
		return 0, false
	}
	return int(f), true
}

// kind describes a JSON value for an error message: strings and numbers
// verbatim (shortened), anything else by its kind.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "an invalid string"
		}
		return quote(s)
	}
	return shorten(string(raw))
}

func quote(s string) string { return fmt.Sprintf("%q", shorten(s)) }

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// jsonForm is the object form as MarshalJSON writes it.
type jsonForm struct {
	StartHour     *int     `json:"start_hour,omitempty"`
	Start         string   `json:"start,omitempty"`
	DurationHours int      `json:"duration_hours,omitempty"`
	Duration      string   `json:"duration,omitempty"`
	Days          []string `json:"days,omitempty"`
	Embargo       []string `json:"embargo,omitempty"`
	Timezone      string   `json:"timezone"`
}

// MarshalJSON writes the object form (null for no window), which Parse reads
// back to an equal Window.
func (w Window) MarshalJSON() ([]byte, error) {
	if w.IsZero() {
		return []byte("null"), nil
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	var j jsonForm
	if w.Start%time.Hour == 0 {
		h := int(w.Start / time.Hour)
		j.StartHour = &h
	} else {
		j.Start = clock(w.Start)
	}
	if w.Duration%time.Hour == 0 {
		j.DurationHours = int(w.Duration / time.Hour)
	} else {
		j.Duration = w.Duration.String()
	}
	for _, d := range w.Days {
		j.Days = append(j.Days, strings.ToLower(dayNames[d]))
	}
	for _, e := range w.Embargo {
		j.Embargo = append(j.Embargo, e.String())
	}
	j.Timezone = w.loc().String()
	return json.Marshal(j)
}

// UnmarshalJSON is Parse.
func (w *Window) UnmarshalJSON(b []byte) error {
	v, err := Parse(b)
	if err != nil {
		return err
	}
	*w = v
	return nil
}
