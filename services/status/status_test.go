package status

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
	"github.com/pqbranch/pqbranch/services/logring"
	"github.com/pqbranch/pqbranch/services/supervise"
)

func TestMain(m *testing.M) { nstest.Main(m, nil) }

func sources() *Sources {
	ring := logring.New(nil, 10)
	ring.Logger().Info("tunnel up")
	return &Sources{
		Version: "1.2.3", Board: "qemu-x86_64", Slot: "A",
		Boot:  time.Now().Add(-90 * time.Second),
		Roles: map[string]string{"lo": "loopback"},
		Tunnel: func() TunnelStatus {
			return TunnelStatus{State: "up", KE: "x25519", AddKE: []string{"mlkem768"}, Encr: "aes256gcm16", PRF: "hmac_sha2_256",
				ESP: "aes256gcm16", SPIs: []string{"c0ffee01", "c0ffee02"}, Bytes: TunnelBytes{In: 10, Out: 20}}
		},
		Services: func() []supervise.State { return []supervise.State{{Name: "network", State: supervise.Running}} },
		Config: func() ConfigState {
			return ConfigState{File: "/data/pqbranch.json", Loaded: true, Errors: []string{"/data/pqbranch.json: mtu: expected 1280..9000"}}
		},
		Log: ring,
	}
}

func TestHandler(t *testing.T) {
	h := Handler(sources())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	tun := m["tunnel"].(map[string]any)
	if m["version"] != "1.2.3" || m["slot"] != "A" || tun["ke"] != "x25519" || tun["addke"].([]any)[0] != "mlkem768" ||
		!strings.HasPrefix(m["uptime"].(string), "1m3") {
		t.Fatalf("report: %s", rec.Body)
	}
	for _, k := range []string{"interfaces", "services", "config", "log", "update", "clock"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in report", k)
		}
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/status", strings.NewReader("{}")))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", method, rec.Code)
		}
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	r := sources().Collect()
	if err := Print(&b, &r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pqbranch 1.2.3 board=qemu-x86_64 slot=A", "tunnel: up", "ke x25519 addke mlkem768", "bytes in 10 out 20",
		"network    running", "mtu: expected 1280..9000", "tunnel up"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "DEVELOPMENT key") {
		t.Errorf("a release-signed report warns of a development key:\n%s", b.String())
	}
	src := sources()
	src.DevKey = true
	r = src.Collect()
	b.Reset()
	if err := Print(&b, &r); err != nil {
		t.Fatal(err)
	}
	if !r.DevKey || !strings.Contains(b.String(), "signed with a DEVELOPMENT key") {
		t.Errorf("a dev-key build is not marked in status:\n%s", b.String())
	}
}

// TestServeOnLAN serves on a LAN address inside a namespace and fetches the
// report over TCP as the status command does.
func TestServeOnLAN(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := nstest.New(t, "status")[0]
	if _, err := ns.Run(ctx, "ip", "addr", "add", "198.18.1.1/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- ns.Do(func() error { return Serve(ctx, slog.New(slog.DiscardHandler), sources(), "198.18.1.1:8080") })
	}()
	// The client's socket must be made inside the namespace too.
	var (
		body []byte
		err  error
	)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var conn net.Conn
		err = ns.Do(func() error {
			var err error
			conn, err = net.Dial("tcp4", "198.18.1.1:8080")
			return err
		})
		if err == nil {
			client := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
			body, err = Fetch(ctx, client, "http://198.18.1.1:8080/status")
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	// A LAN client gets the summary: no SPIs, no log lines (see Report.Summary).
	if r.Tunnel.State != "up" || len(r.Tunnel.SPIs) != 0 || r.Config.Errors[0] == "" || len(r.Log) != 0 {
		t.Fatalf("report %+v", r)
	}
	found := false
	for _, i := range r.Interfaces {
		// The handler runs on threads outside the namespace, so it lists
		// the host's interfaces; lo exists everywhere.
		if i.Name == "lo" && i.Role == "loopback" && i.Up && len(i.Addresses) > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("interfaces %+v", r.Interfaces)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func FuzzDecode(f *testing.F) {
	r := sources().Collect()
	b, _ := json.Marshal(r)
	f.Add(b)
	f.Add([]byte(`{"uptime":"x"}`))
	f.Add([]byte(`{"tunnel":{"bytes":{"in":-1}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must print without failing.
		if err := Print(new(bytes.Buffer), r); err != nil {
			t.Fatal(err)
		}
	})
}
