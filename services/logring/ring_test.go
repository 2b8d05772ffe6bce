package logring

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRingKeepsNewestLines(t *testing.T) {
	var console bytes.Buffer
	r := New(&console, 3)
	clock := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	for i := range 5 {
		fmt.Fprintf(r, "line %d\n", i)
	}
	got := r.Recent(0)
	if len(got) != 3 || got[0].Line != "line 2" || got[2].Line != "line 4" {
		t.Fatalf("got %+v", got)
	}
	if !got[0].Time.Before(got[2].Time) {
		t.Errorf("timestamps not increasing: %+v", got)
	}
	if r2 := r.Recent(1); len(r2) != 1 || r2[0].Line != "line 4" {
		t.Errorf("Recent(1) = %+v", r2)
	}
	if strings.Count(console.String(), "\n") != 5 {
		t.Errorf("console got %q", console.String())
	}
}

func TestRingJoinsPartialWrites(t *testing.T) {
	r := New(nil, 4)
	r.Write([]byte("hel"))
	r.Write([]byte("lo\nwor"))
	if got := r.Recent(0); len(got) != 1 || got[0].Line != "hello" {
		t.Fatalf("got %+v", got)
	}
	r.Write([]byte("ld\n"))
	if got := r.Recent(0); len(got) != 2 || got[1].Line != "world" {
		t.Fatalf("got %+v", got)
	}
}

func TestLogger(t *testing.T) {
	r := New(nil, 8)
	r.Logger().Info("network up", "wan", "eth0")
	got := r.Recent(0)
	if len(got) != 1 || !strings.Contains(got[0].Line, `msg="network up" wan=eth0`) {
		t.Fatalf("got %+v", got)
	}
}
