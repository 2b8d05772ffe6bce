package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// HTTPFetcher reads a repository from any static web server, object store
// or CDN: plain GETs of the file names under Base.
type HTTPFetcher struct {
	Base   string // "https://updates.example/repo" (no trailing slash needed)
	Client *http.Client
	// Bytes counts the body bytes read, for bytes-per-check-in figures.
	Bytes atomic.Int64
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	u, err := url.JoinPath(f.Base, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: %w (HTTP 404)", u, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	case resp.ContentLength > max:
		return nil, fmt.Errorf("%s: %w: %d bytes; at most %d expected", u, ErrTooLarge, resp.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	f.Bytes.Add(int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", u, ErrTooLarge, max)
	}
	return b, nil
}

// DirFetcher reads a repository directory on the local file system.
type DirFetcher string

// Fetch implements Fetcher.
func (d DirFetcher) Fetch(_ context.Context, name string, max int64) ([]byte, error) {
	if !fs.ValidPath(name) || strings.Contains(name, "\\") {
		return nil, fmt.Errorf("%s: not a repository path", name)
	}
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, max)
	}
	return b, nil
}
