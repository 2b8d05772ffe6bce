package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	want := persisted{
		Format: stateFormat, SecurityFloor: 7,
		Download: &download{Source: "https://u.example/x.pqb", Header: "ab", Slot: "B", Release: v1, Size: 10, SHA256: "cd", Next: 3},
		Trial:    &trial{Slot: "B", Version: "0.2.0", BuildID: "ef", Boots: 1, Armed: true, ReachedInit: at, LastHealth: "tunnel down"},
		Failed:   []failedBuild{{BuildID: "12", Version: "0.1.5", Epoch: 5, At: at, Reason: "never reached init"}},
		Last:     &Result{Result: OutcomeRolledBack, At: at, From: "0.1.0", To: "0.1.5", Reason: "never reached init"},
	}
	if err := saveState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Nothing but state.json is left behind: no temporary files.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != stateFile {
		t.Fatalf("data dir holds %v; expected only %s", ents, stateFile)
	}
}

// TestLoadStateFromNewerAgent: after a rollback the old slot's agent reads
// the state a newer agent wrote, with fields it does not know.
func TestLoadStateFromNewerAgent(t *testing.T) {
	dir := t.TempDir()
	state := `{"format":1,"security_floor":3,"from_the_future":{"x":1},"last":{"result":"rolled-back","at":"2026-12-06T02:10:00Z","to":"0.3.0","reason":"unhealthy"}}`
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.SecurityFloor != 3 || p.Last == nil || p.Last.Result != OutcomeRolledBack || p.Last.Reason != "unhealthy" {
		t.Fatalf("state from a newer agent read as %+v", p)
	}
}

func TestLoadStateErrors(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"other format", `{"format":2}`, `field "format": is 2; expected 1`},
		{"not json", `{`, "unexpected end of JSON input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, stateFile), []byte(tc.content), 0o600)
			_, err := loadState(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), stateFile) {
				t.Fatalf("error %v; expected one naming %s and %q", err, stateFile, tc.want)
			}
		})
	}
	if p, err := loadState(t.TempDir()); err != nil || p.Format != stateFormat || p.Download != nil {
		t.Fatalf("missing file: %+v, %v; expected a fresh state", p, err)
	}
}

func TestStateNames(t *testing.T) {
	for s := Idle; s <= Failed; s++ {
		b, err := s.MarshalText()
		if err != nil || strings.HasPrefix(string(b), "State(") {
			t.Fatalf("state %d: %q, %v", s, b, err)
		}
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("state %q: back %v, %v", b, back, err)
		}
	}
	if _, err := State(200).MarshalText(); err == nil {
		t.Fatal("State(200) has a name")
	}
	if RolledBack.String() != "rolled-back" {
		t.Fatal(RolledBack.String())
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Minute: "1h30m", 30 * time.Second: "30s",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q; expected %q", d, got, want)
		}
	}
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 100-199/200", "bytes 0-0/1", "bytes */200", "", "bytes -5/10", "items 1-2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := contentRangeStart(s)
		if err == nil && !strings.HasPrefix(s, "bytes ") {
			t.Fatalf("%q accepted as %d", s, n)
		}
	})
}

// FuzzLoadState: a damaged state.json is an error, never a panic, and
// what loads saves and loads back the same.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"format":1,"security_floor":3,"download":{"source":"/x","header":"a","slot":"B","release":{"version":"1","board":"b","profile":"dev","kernel":"k","security_version":1,"epoch":1},"size":1,"sha256":"s","next":2,"staged":false}}`))
	f.Add([]byte(`{"format":1,"trial":{"slot":"B","armed":true,"boots":1}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, stateFile), b, 0o600)
		p, err := loadState(dir)
		if err != nil {
			return
		}
		if err := saveState(dir, p); err != nil {
			t.Fatal(err)
		}
		q, err := loadState(dir)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("saved state does not load back: %v\n%+v\n%+v", err, p, q)
		}
	})
}
