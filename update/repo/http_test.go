package repo

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func httptestServer(t *testing.T, dir string) string {
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}
