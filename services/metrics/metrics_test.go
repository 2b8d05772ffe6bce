package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/services/supervise"
	"github.com/pqbranch/pqbranch/update/agent"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", resp.Status, b)
	}
	return string(b)
}

func TestScrape(t *testing.T) {
	est := time.Unix(1_700_000_000, 0)
	report := status.Report{
		Version: "1.2.3", Board: "qemu-x86_64", Slot: "B",
		Tunnel: status.TunnelStatus{State: "established", KE: "x25519", AddKE: []string{"mlkem768"}, Encr: "aes256gcm16", ESP: "aes256gcm16",
			Bytes: status.TunnelBytes{In: 1000, Out: 2000}, Packets: status.TunnelBytes{In: 10, Out: 20}, Established: est, IKERekeys: 2, ChildRekeys: 5},
		Services: []supervise.State{{Name: "tunnel", State: "running", Restarts: 3}, {Name: "dns", State: "backoff", Restarts: 1}},
		Config:   status.ConfigState{Errors: []string{"a", "b"}},
		Update:   status.UpdateStatus{Status: agent.Status{State: agent.Downloading}},
	}
	h := Handler(Sources{
		Report: func() status.Report { return report },
		DHCP:   func() DHCPStats { return DHCPStats{Leases: 7, Requests: 40} },
		DNS:    func() DNSStats { return DNSStats{Queries: 100, CacheHits: 30, Failures: 5, Internal: 12} },
		Syslog: func() SyslogStats { return SyslogStats{Sent: 500, Dropped: 4, Queued: 9, Connected: true} },
	})
	body := scrape(t, h)
	for _, want := range []string{
		`pqbranch_tunnel_state{state="established"} 1`,
		`pqbranch_tunnel_state{state="down"} 0`,
		`pqbranch_tunnel_established_timestamp_seconds{addke="mlkem768",encr="aes256gcm16",esp="aes256gcm16",ke="x25519"} 1.7e+09`,
		`pqbranch_tunnel_ike_rekeys 2`,
		`pqbranch_tunnel_child_rekeys 5`,
		`pqbranch_tunnel_esp_bytes{direction="in"} 1000`,
		`pqbranch_tunnel_esp_bytes{direction="out"} 2000`,
		`pqbranch_tunnel_esp_packets{direction="out"} 20`,
		`pqbranch_service_restarts_total{service="tunnel"} 3`,
		`pqbranch_service_running{service="dns"} 0`,
		`pqbranch_config_errors 2`,
		`pqbranch_update_state{state="` + agent.Downloading.String() + `"} 1`,
		`pqbranch_info{board="qemu-x86_64",slot="B",version="1.2.3"} 1`,
		`pqbranch_dhcp_leases 7`,
		`pqbranch_dns_queries_total{result="cache"} 30`,
		`pqbranch_dns_queries_total{result="forwarded"} 65`,
		`pqbranch_dns_queries_total{result="internal"} 12`,
		`pqbranch_syslog_messages_total{result="sent"} 500`,
		`pqbranch_syslog_messages_total{result="dropped"} 4`,
		`pqbranch_syslog_queued 9`,
		`pqbranch_syslog_connected 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %s in:\n%s", want, body)
		}
	}

	// Down: no established time, the state flips.
	report.Tunnel = status.TunnelStatus{State: "connecting"}
	report.Update = status.UpdateStatus{Unavailable: "no slots"}
	body = scrape(t, h)
	if strings.Contains(body, "established_timestamp") || !strings.Contains(body, `pqbranch_tunnel_state{state="connecting"} 1`) ||
		strings.Contains(body, "pqbranch_update_state") {
		t.Errorf("down tunnel:\n%s", body)
	}
}

// Through the status endpoint: /metrics beside /status, GET only.
func TestServedByStatus(t *testing.T) {
	src := &status.Sources{Version: "9", Boot: time.Now()}
	src.Metrics = Handler(Sources{Report: src.Collect})
	srv := httptest.NewServer(status.Handler(src))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `pqbranch_tunnel_state{state="not configured"} 1`) {
		t.Fatalf("%s:\n%s", resp.Status, b)
	}
	resp, err = http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %s", resp.Status)
	}
}
