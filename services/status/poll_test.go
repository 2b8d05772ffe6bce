package status

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	t.Run("accepts a later report", func(t *testing.T) {
		n := 0
		fetch := func(context.Context) (*Report, error) {
			n++
			if n < 3 {
				return nil, errors.New("not up yet")
			}
			return &Report{Version: "v" + string(rune('0'+n))}, nil
		}
		r, err := Poll(context.Background(), time.Millisecond, fetch, func(r *Report) bool { return r.Version == "v4" })
		if err != nil || r.Version != "v4" || n != 4 {
			t.Fatalf("Poll = %+v, %v after %d fetches", r, err, n)
		}
	})
	t.Run("times out with the last report and error", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		n := 0
		fetch := func(context.Context) (*Report, error) {
			n++
			if n == 1 {
				return &Report{Version: "old"}, nil
			}
			return nil, errors.New("connection refused")
		}
		r, err := Poll(ctx, time.Millisecond, fetch, func(*Report) bool { return false })
		if r == nil || r.Version != "old" || err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Poll = %+v, %v", r, err)
		}
	})
}
