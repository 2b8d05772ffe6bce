package config

import (
	"errors"
	"strings"
	"testing"
)

// TestSerial: the site config revision that decides whether a USB stick's
// config replaces the installed one (services/provision).
func TestSerial(t *testing.T) {
	cases := []struct {
		name   string
		serial any // nil: field absent
		want   int64
		expect string // the problem with field "serial"; empty: valid
	}{
		{name: "absent is 0", want: 0},
		{name: "zero", serial: 0, want: 0},
		{name: "positive", serial: 42, want: 42},
		{name: "large", serial: int64(1) << 53, want: int64(1) << 53},
		{name: "negative", serial: -1, expect: "expected a whole number 0 or higher (the site config revision), got -1"},
		{name: "fraction", serial: 1.5, expect: "expected a whole number"},
		{name: "string", serial: "7", expect: "expected a whole number, got a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := edit(t, func(m map[string]any) {
				if tc.serial != nil {
					m["serial"] = tc.serial
				}
			})
			c, err := Parse("site.json", raw)
			if tc.expect == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Serial != tc.want {
					t.Errorf("serial %d, want %d", c.Serial, tc.want)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a config error", err)
			}
			for _, f := range ce.Fields {
				if f.Field == "serial" && strings.Contains(f.Problem, tc.expect) {
					return
				}
			}
			t.Errorf("got %v, want serial: %s", err, tc.expect)
		})
	}
}
