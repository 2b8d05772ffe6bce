package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// source is where a bundle's bytes come from: an HTTPS URL or a local file.
// Both are read the same way, so `update install FILE` goes through exactly
// the verify-and-write path of a download.
type source interface {
	// open returns the bundle's bytes from offset off to the end.
	open(ctx context.Context, off int64) (io.ReadCloser, error)
	// channel describes the transport of the last open ("" for a file).
	channel() string
	String() string
}

// fileSource reads a local bundle file.
type fileSource struct{ path string }

func (s fileSource) String() string  { return s.path }
func (s fileSource) channel() string { return "" }

func (s fileSource) open(ctx context.Context, off int64) (io.ReadCloser, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("bundle file: %w", err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("bundle file %s: seek to %d: %w", s.path, off, err)
	}
	return f, nil
}

// httpSource fetches a bundle over HTTPS, resuming with Range requests.
type httpSource struct {
	url    string
	client *http.Client
	last   string // channel of the last response
}

// newTLSConfig is the update channel: TLS 1.3 only, the server checked
// against the configured CA pool, and the hybrid post-quantum key exchange
// X25519MLKEM768 preferred, so a recorded download cannot be decrypted
// later by a quantum computer. X25519 stays as a fallback for servers
// (or middleboxes) without ML-KEM: the bundle's own hybrid signature, not
// the channel, is what makes an update trustworthy.
func newTLSConfig(ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		RootCAs:          ca,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519},
	}
}

func newHTTPSource(raw string, ca *x509.CertPool) (*httpSource, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("update.url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("update.url: is %q; expected an https:// URL", raw)
	}
	return &httpSource{url: raw, client: newHTTPClient(ca)}, nil
}

// newHTTPClient is the client of every update channel: bundles, the
// repository's metadata and targets, and outcome reports.
func newHTTPClient(ca *x509.CertPool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:       newTLSConfig(ca),
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr}
}

func (s *httpSource) String() string  { return s.url }
func (s *httpSource) channel() string { return s.last }

func (s *httpSource) open(ctx context.Context, off int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("update.url: %w", err)
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch bundle: %w", err)
	}
	if resp.TLS != nil {
		s.last = fmt.Sprintf("%s %s", tls.VersionName(resp.TLS.Version), resp.TLS.CurveID)
	}
	switch {
	case off > 0 && resp.StatusCode == http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			resp.Body.Close()
			return nil, fmt.Errorf("fetch bundle %s: asked for bytes from %d, got Content-Range %q", s.url, off, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	case resp.StatusCode == http.StatusOK:
		if off > 0 {
			// The server ignores Range: skip what we have. Bounded memory,
			// wasted bandwidth, still correct.
			if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("fetch bundle %s: skip to %d: %w", s.url, off, err)
			}
		}
		return resp.Body, nil
	default:
		resp.Body.Close()
		return nil, fmt.Errorf("fetch bundle %s: %s", s.url, resp.Status)
	}
}

// contentRangeStart parses the first byte of "bytes 123-456/789".
func contentRangeStart(v string) (int64, error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, fmt.Errorf("Content-Range %q: expected \"bytes \"", v)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("Content-Range %q: expected a range", v)
	}
	return strconv.ParseInt(first, 10, 64)
}
