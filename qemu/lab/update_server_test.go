package lab

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// The update server offers the live bundle from where the build writes it,
// read afresh per request (a rebuild is offered at once), and published
// files beside it, both with Range requests for resumed downloads.
func TestUpdateServerLiveBundleAndRanges(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	live := filepath.Join(out, "update.pqb")
	u := &updateServer{dir: dir, live: live}
	srv := httptest.NewServer(u)
	defer srv.Close()
	get := func(path, rng string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if err := os.WriteFile(live, []byte("build-one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/update.pqb", ""); code != 200 || body != "build-one" {
		t.Fatalf("live bundle: %d %q", code, body)
	}
	// The build swaps out/<board> as a whole: a new file at the same path.
	if err := os.WriteFile(live+".new", []byte("build-two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(live+".new", live); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/update.pqb", "bytes=6-"); code != http.StatusPartialContent || body != "two" {
		t.Fatalf("live bundle after a rebuild, from byte 6: %d %q", code, body)
	}
	l := &Lab{updates: u}
	src := filepath.Join(t.TempDir(), "b")
	if err := os.WriteFile(src, []byte("published"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Publish(src, "other.pqb"); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/other.pqb", "bytes=0-3"); code != http.StatusPartialContent || body != "publ" {
		t.Fatalf("published file, first 4 bytes: %d %q", code, body)
	}
	if n := len(l.UpdateRequests()); n != 3 {
		t.Errorf("%d requests recorded; want 3", n)
	}
}
