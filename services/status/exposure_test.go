package status

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The LAN gets a summary without SPIs and log lines; the console (loopback)
// gets everything.
func TestLANSeesSummary(t *testing.T) {
	src := sources()
	src.Tunnel = func() TunnelStatus {
		return TunnelStatus{State: "established", KE: "x25519", SPIs: []string{"ike c0ffee0011223344/5566778899aabbcc"},
			LastError: "child SA 8b569ca6: rekey refused"}
	}
	for _, tt := range []struct {
		remote string
		detail bool
	}{{"127.0.0.1:4242", true}, {"[::1]:4242", true}, {"198.18.1.10:4242", false}, {"[fd00::10]:4242", false}} {
		req := httptest.NewRequest(http.MethodGet, "/status", nil)
		req.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		Handler(src).ServeHTTP(w, req)
		var rep Report
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		body := w.Body.String()
		leaks := strings.Contains(body, "c0ffee00") || strings.Contains(body, "8b569ca6") || len(rep.Log) > 0
		if leaks != tt.detail {
			t.Errorf("client %s: detail shown = %v, want %v:\n%s", tt.remote, leaks, tt.detail, body)
		}
		if rep.Tunnel.State != "established" || rep.Tunnel.KE != "x25519" {
			t.Errorf("client %s: summary lost the state: %+v", tt.remote, rep.Tunnel)
		}
	}
}

// The listener holds at most its limit of connections; the next waits
// until one closes.
func TestConnectionLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 3
	l := &limitListener{Listener: ln, slots: make(chan struct{}, limit)}
	defer l.Close()
	accepted := make(chan net.Conn, 2*limit)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range limit + 1 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var held []net.Conn
	for range limit {
		select {
		case c := <-accepted:
			held = append(held, c)
		case <-time.After(5 * time.Second):
			t.Fatal("connection within the limit not accepted")
		}
	}
	select {
	case <-accepted:
		t.Fatal("connection beyond the limit accepted")
	case <-time.After(100 * time.Millisecond):
	}
	held[0].Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("waiting connection not accepted after one closed")
	}
	for _, c := range held[1:] {
		c.Close()
	}
}
