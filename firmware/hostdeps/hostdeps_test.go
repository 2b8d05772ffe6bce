package hostdeps

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestMissing(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present")
	os.WriteFile(present, nil, 0o644)
	absent := filepath.Join(dir, "absent")
	needs := []need{
		{"a", []string{absent, present}}, // any of the files will do
		{"b", []string{absent}},
		{"c", []string{present}},
		{"b", []string{absent + "2"}}, // a package is listed once
	}
	if got, want := Missing(needs), []string{"b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Missing = %v, want %v", got, want)
	}
}

func TestFor(t *testing.T) {
	for _, job := range []string{"image", "run", "test"} {
		if n, err := For(job); err != nil || len(n) == 0 {
			t.Errorf("For(%s) = %v, %v", job, n, err)
		}
	}
	if _, err := For("deploy"); err == nil {
		t.Error("For(deploy) accepted")
	}
}
