package report

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Path is the report endpoint's path under the fleet server's base URL.
const Path = "/v1/reports"

// Sender posts a device's signed reports. The device agent holds one; Seq
// must come from the agent's persistent state so it keeps growing across
// reboots (NextSeq is the in-memory helper the simulator uses).
type Sender struct {
	URL    string // the fleet server's base URL
	Device string
	Key    ed25519.PrivateKey
	Client *http.Client

	mu  sync.Mutex
	seq uint64
}

// NextSeq returns the next sequence number, starting above start.
func (s *Sender) NextSeq(start uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = max(s.seq, start) + 1
	return s.seq
}

// Send signs and posts r. A refused report comes back as an error with the
// endpoint's reason.
func (s *Sender) Send(ctx context.Context, r Report) error {
	r.Device = s.Device
	body, err := Sign(r, s.Key)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.URL, "/")+Path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("report: sending to %s: %w", s.URL, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return &RefusedError{URL: s.URL, Code: resp.StatusCode, Msg: strings.TrimSpace(string(msg))}
	}
	return nil
}

// RefusedError is the endpoint's answer to a report it did not take.
type RefusedError struct {
	URL  string
	Code int    // HTTP status
	Msg  string // the endpoint's reason
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("report: %s refused the report (HTTP %d): %s", e.URL, e.Code, e.Msg)
}

// Replay reports whether the endpoint already holds a report with this
// sequence number or a later one (HTTP 409): a device whose earlier
// send lost its answer drops the report instead of retrying it forever.
func (e *RefusedError) Replay() bool { return e.Code == http.StatusConflict }
