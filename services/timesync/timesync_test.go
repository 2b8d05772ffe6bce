package timesync

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m, nil) }

const ntpEpochOffset = 2208988800

func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// parseRequest checks an SNTP client request, as the fake server sees it
// from the network, and returns its transmit timestamp.
func parseRequest(b []byte) (uint64, error) {
	if len(b) < 48 {
		return 0, errors.New("short")
	}
	if mode := b[0] & 7; mode != 3 {
		return 0, errors.New("not a client request")
	}
	if vn := b[0] >> 3 & 7; vn < 1 || vn > 4 {
		return 0, errors.New("bad version")
	}
	return binary.BigEndian.Uint64(b[40:48]), nil
}

func FuzzParseRequest(f *testing.F) {
	req := make([]byte, 48)
	req[0] = 0x23
	f.Add(req)
	f.Add([]byte{0x1b})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseRequest(b); err == nil && (len(b) < 48 || b[0]&7 != 3) {
			t.Fatalf("accepted %x", b)
		}
	})
}

// serveNTP answers SNTP requests on conn with the true time.
func serveNTP(conn net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		xmt, err := parseRequest(buf[:n])
		if err != nil {
			continue
		}
		now := time.Now()
		resp := make([]byte, 48)
		resp[0] = 0<<6 | 4<<3 | 4 // no leap warning, v4, server
		resp[1] = 2               // stratum
		resp[2] = 6
		resp[3] = 0xec
		copy(resp[12:16], "TEST")
		binary.BigEndian.PutUint64(resp[16:], ntpTime(now.Add(-time.Minute)))
		binary.BigEndian.PutUint64(resp[24:], xmt)
		binary.BigEndian.PutUint64(resp[32:], ntpTime(now))
		binary.BigEndian.PutUint64(resp[40:], ntpTime(time.Now()))
		conn.WriteTo(resp, from)
	}
}

// TestSyncStepsClock runs a fake server at 192.0.2.123 in a namespace; the
// appliance's clock is an hour slow and gets stepped to the right time.
func TestSyncStepsClock(t *testing.T) {
	ctx := context.Background()
	ns := nstest.New(t, "ntp")[0]
	if _, err := ns.Run(ctx, "ip", "addr", "add", "192.0.2.123/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	var srv net.PacketConn
	if err := ns.Do(func() (err error) {
		srv, err = net.ListenPacket("udp4", "192.0.2.123:123")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go serveNTP(srv)

	var (
		mu  sync.Mutex
		set []time.Time
	)
	s := New([]string{"192.0.2.124", "192.0.2.123"}, slog.New(slog.DiscardHandler))
	s.timeout = 300 * time.Millisecond
	s.now = func() time.Time { return time.Now().Add(-time.Hour) }
	s.set = func(tm time.Time) error {
		mu.Lock()
		set = append(set, tm)
		mu.Unlock()
		return nil
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go ns.Do(func() error { return s.Run(runCtx) }) // queries from inside the namespace

	if !s.WaitSynced(ctx, 10*time.Second) {
		t.Fatalf("not synced: %+v", s.Status())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(set) != 1 {
		t.Fatalf("clock set %d times", len(set))
	}
	if d := time.Since(set[0]); d < -time.Second || d > time.Second {
		t.Fatalf("clock set to %v, %v off the true time", set[0], d)
	}
	st := s.Status()
	if !st.Synced || st.Server != "192.0.2.123" || st.Offset < 59*time.Minute {
		t.Fatalf("status %+v", st)
	}
}

// TestNoServerKeepsRunning: unreachable servers neither block the caller
// beyond its limit nor stop the syncer.
func TestNoServerKeepsRunning(t *testing.T) {
	ctx := context.Background()
	ns := nstest.New(t, "ntpnone")[0]
	s := New([]string{"192.0.2.200"}, slog.New(slog.DiscardHandler))
	s.timeout = 100 * time.Millisecond
	s.retry = 50 * time.Millisecond
	s.set = func(time.Time) error { t.Error("clock set without a server"); return nil }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- ns.Do(func() error { return s.Run(runCtx) }) }()
	start := time.Now()
	if s.WaitSynced(ctx, 500*time.Millisecond) {
		t.Fatal("synced without a server")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("WaitSynced took %v", d)
	}
	if st := s.Status(); st.Synced || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}
