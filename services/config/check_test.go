package config

import (
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
)

// refuseAll is the kind of check a dev test image adds: it refuses any config.
func refuseAll(*Config) []FieldError {
	return []FieldError{{Field: "hostname", Problem: "refused by the check"}}
}

// TestChecks: a check's problems join the validator's in one *Error, after
// them; without the check the same bytes pass.
func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		raw    []byte
		checks []Check
		want   []string // FieldError.String() of each problem; nil: accepted
	}{
		{"valid, no check", readExample(t), nil, nil},
		{"valid, a check that passes", readExample(t), []Check{func(*Config) []FieldError { return nil }}, nil},
		{"valid, refused by the check", readExample(t), []Check{refuseAll}, []string{"hostname: refused by the check"}},
		{"invalid, refused by the check too", edit(t, func(m map[string]any) { m["mtu"] = 100 }), []Check{refuseAll},
			[]string{"mtu: expected 1280..9000 (or leave out for 1500), got 100", "hostname: refused by the check"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("site.json", tc.raw, tc.checks...)
			if tc.want == nil {
				if err != nil || c == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "site.json" {
				t.Fatalf("error %v, want a *config.Error for site.json", err)
			}
			var got []string
			for _, f := range ce.Fields {
				got = append(got, f.String())
			}
			if !slices.Equal(got, tc.want) || c != nil {
				t.Fatalf("problems %q, want %q (config %v)", got, tc.want, c)
			}
		})
	}
}

// TestStoreChecks: a store's checks refuse the file on every load, so
// nothing is in force and LastError says why; the board default still
// runs as the fallback, which they do not apply to.
func TestStoreChecks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pqbranch.json")
	writeConfig(t, path, readExample(t))
	s := NewStore(path, slog.New(slog.DiscardHandler), refuseAll)
	changes := s.Subscribe()
	for range 2 { // first load, then a reload
		err := s.Reload()
		var ce *Error
		if !errors.As(err, &ce) || len(ce.Fields) != 1 || ce.Error() != path+": hostname: refused by the check" {
			t.Fatalf("reload: %v", err)
		}
		if s.Current() != nil || s.LastError() != err {
			t.Fatalf("in force %v, last error %v", s.Current(), s.LastError())
		}
	}
	if err := s.Fallback("board default config", readExample(t)); err != nil {
		t.Fatalf("fallback: %v", err)
	}
	if s.Current() == nil || s.LastError() == nil {
		t.Fatal("fallback not in force, or the file's error forgotten")
	}
	select {
	case <-changes:
		t.Fatal("subscribers told about a refused config")
	default:
	}
	// The same file passes a store without the check.
	if err := NewStore(path, slog.New(slog.DiscardHandler)).Reload(); err != nil {
		t.Fatalf("without the check: %v", err)
	}
}
