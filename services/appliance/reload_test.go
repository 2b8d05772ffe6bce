package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// flowConfig has internet breakout (so a LAN host's flow crosses the
// appliance to the WAN), the DNS forwarder on, and a tunnel.
func flowConfig(psk, servers, search string) string {
	return `{
  "hostname": "branch-flow",
  "wan": {"mode": "static", "static": {"address": "192.0.2.2/24", "gateway": "192.0.2.1"}},
  "lan": {"addresses": ["198.18.1.1/24"]},
  "dns": {"servers": [` + servers + `], "search": [` + search + `]},
  "firewall": {"internet_breakout": true, "management_port": 8080, "lan": {"dhcp": false, "dns": true}},
  "tunnel": {"local_id": "b", "remote_id": "e", "remote": "192.0.2.1", "auth": "psk", "psk": "` + psk + `",
             "local_subnets": ["198.18.1.0/24"], "remote_subnets": ["198.19.0.0/24"]},
  "time": {}, "update": {}
}`
}

// echoFlow is one TCP connection from the LAN host to an echo server on
// the WAN, through the appliance, exchanging a line every 20ms.
type echoFlow struct {
	echoed atomic.Int64
	mu     sync.Mutex
	err    error
	stop   chan struct{}
	done   chan struct{}
}

func startEchoFlow(t *testing.T, lan, wan *netns.NS) *echoFlow {
	t.Helper()
	var ln net.Listener
	if err := wan.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "192.0.2.1:7000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	var c net.Conn
	if err := lan.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", "192.0.2.1:7000", 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("LAN to WAN through the appliance: %v", err)
	}
	f := &echoFlow{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer c.Close()
		rd := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line := fmt.Sprintf("%d\n", i)
			if _, err := io.WriteString(c, line); err != nil {
				f.fail(err)
				return
			}
			got, err := rd.ReadString('\n')
			if err != nil || got != line {
				f.fail(fmt.Errorf("echo %d: got %q, %v", i, got, err))
				return
			}
			f.echoed.Add(1)
		}
	}()
	t.Cleanup(func() { close(f.stop); <-f.done })
	return f
}

func (f *echoFlow) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *echoFlow) check(t *testing.T, when string) {
	t.Helper()
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		t.Fatalf("%s: the LAN flow broke: %v", when, err)
	}
	n := f.echoed.Load()
	deadline := time.Now().Add(3 * time.Second)
	for f.echoed.Load() < n+10 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the LAN flow stalled at %d echoes", when, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// since returns each service's start time from the LAN's status report.
func since(t *testing.T, lan *netns.NS) map[string]time.Time {
	t.Helper()
	r, err := fetch(lan, "198.18.1.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, s := range r.Services {
		if s.State != "running" {
			t.Fatalf("service %s is %s: %s", s.Name, s.State, s.LastError)
		}
		out[s.Name] = s.Since
	}
	return out
}

// reloadAndWait sends SIGHUP and waits until the appliance has applied the
// n-th new config.
func reloadAndWait(t *testing.T, rg *rig, n int) {
	t.Helper()
	rg.reload()
	eventually(t, "config applied", func() error {
		if c := strings.Count(rg.cmd.Stderr(), "applying new config"); c < n {
			return fmt.Errorf("%d configs applied", c)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // let restarted services come up
}

func restarted(before, after map[string]time.Time) []string {
	var out []string
	for name, t := range after {
		if !t.Equal(before[name]) {
			out = append(out, name)
		}
	}
	return out
}

// TestReloadKeepsFlows: a reload applies only what changed. A LAN flow
// held open across a reload that changes only the tunnel, and one that
// changes only DNS, loses nothing, and nothing else is restarted.
func TestReloadKeepsFlows(t *testing.T) {
	rg := bootAppliance(t, flowConfig("flow-secret-psk-0123456789", `"192.0.2.53"`, `"a.example"`))
	eventually(t, "status from the LAN", func() error { _, err := fetch(rg.lan, "198.18.1.1:8080"); return err })
	if _, err := rg.lan.Run(context.Background(), "ip", "route", "add", "default", "via", "198.18.1.1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "forwarding up", func() error {
		return rg.lan.Do(func() error {
			c, err := net.DialTimeout("tcp4", "192.0.2.1:9", 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			var oe *net.OpError
			if errors.As(err, &oe) && strings.Contains(err.Error(), "refused") {
				return nil // the WAN host answered: forwarding and NAT work
			}
			return err
		})
	})
	flow := startEchoFlow(t, rg.lan, rg.wan)
	flow.check(t, "before any reload")
	before := since(t, rg.lan)

	// Only the tunnel changes: only the tunnel restarts.
	rg.write(t, flowConfig("flow-secret-psk-changed-98765", `"192.0.2.53"`, `"a.example"`))
	reloadAndWait(t, rg, 1)
	flow.check(t, "after a tunnel-only reload")
	after := since(t, rg.lan)
	if got := restarted(before, after); len(got) != 1 || got[0] != "tunnel" {
		t.Fatalf("a tunnel-only change restarted %v, want [tunnel]", got)
	}

	// Only the resolvers change: resolv.conf follows, nothing restarts.
	rg.write(t, flowConfig("flow-secret-psk-changed-98765", `"192.0.2.54"`, `"b.example"`))
	reloadAndWait(t, rg, 2)
	flow.check(t, "after a DNS-only reload")
	if got := restarted(after, since(t, rg.lan)); len(got) != 0 {
		t.Fatalf("a DNS-only change restarted %v", got)
	}
	eventually(t, "resolv.conf rewritten", func() error {
		b, _ := os.ReadFile(filepath.Join(rg.dir, "resolv.conf"))
		if !strings.Contains(string(b), "nameserver 192.0.2.54\nsearch b.example\n") {
			return fmt.Errorf("resolv.conf:\n%s", b)
		}
		return nil
	})

	// The metrics endpoint answers on the LAN with the tunnel's state and
	// the services; the WAN gets nothing.
	body := scrapeMetrics(t, rg.lan, "198.18.1.1:8080")
	for _, want := range []string{`pqbranch_tunnel_state{state="not configured"} 1`, `pqbranch_service_running{service="dns"} 1`,
		`pqbranch_config_errors 0`, `pqbranch_dns_queries_total{result="forwarded"} 0`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	if err := dropped(rg.wan, "192.0.2.2:8080"); err != nil {
		t.Errorf("metrics port from the WAN: %v", err)
	}
}

func scrapeMetrics(t *testing.T, ns *netns.NS, addr string) string {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	return string(b)
}
