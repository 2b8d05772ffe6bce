package appliance

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
	"github.com/pqbranch/pqbranch/services/network"
	"github.com/pqbranch/pqbranch/services/status"
)

// The namespace tests run the whole appliance userland as a child of the
// test binary inside the appliance namespace (nstest.Start).
func TestMain(m *testing.M) {
	nstest.Main(m, map[string]func(context.Context) error{"appliance": childAppliance})
}

// childAppliance runs the whole appliance userland inside the test's
// appliance namespace, as init would, minus PID 1 duties.
func childAppliance(ctx context.Context) error {
	app, err := New(Options{
		Version: "test", Board: "qemu-x86_64", Slot: "A",
		ConfigPath: os.Getenv("PQB_CONFIG"), ResolvConf: os.Getenv("PQB_RESOLV"),
		WAN: network.Match{Name: "wan0"}, LAN: network.Match{Name: "lan0"},
		Console: os.Stderr,
	})
	if err != nil {
		return err
	}
	return app.Run(ctx)
}

func testConfig(mtu, port string) string {
	return `{
  "hostname": "branch-e2e", "mtu": ` + mtu + `,
  "wan": {"mode": "static", "static": {"address": "192.0.2.2/24", "gateway": "192.0.2.1"}},
  "lan": {"addresses": ["198.18.1.1/24"]},
  "dns": {},
  "firewall": {"internet_breakout": false, "management_port": ` + port + `, "lan": {"dhcp": false, "dns": false}},
  "tunnel": {"local_id": "b", "remote_id": "e", "remote": "192.0.2.1", "auth": "psk", "psk": "e2e-secret-psk-0123456789",
             "local_subnets": ["198.18.1.0/24"], "remote_subnets": ["198.19.0.0/24"]},
  "time": {}, "update": {"window": "Sun 02:00-04:00"}
}`
}

// fetch gets the status report over TCP from inside ns.
func fetch(ns *netns.NS, addr string) (*status.Report, error) {
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", addr, 500*time.Millisecond)
		return err
	}); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	b, err := status.Fetch(context.Background(), client, "http://"+addr+"/status")
	if err != nil {
		return nil, err
	}
	return status.Decode(b)
}

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dropped reports whether a TCP connect from ns to addr goes unanswered.
func dropped(ns *netns.NS, addr string) error {
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return errors.New("answered: " + errString(err))
}

func errString(err error) string {
	if err == nil {
		return "connected"
	}
	return err.Error()
}

// rig is the appliance userland running in namespaces: a LAN host at
// 198.18.1.2, the appliance (lan0, wan0 192.0.2.2) and a WAN router at
// 192.0.2.1.
type rig struct {
	lan, app, wan *netns.NS
	dir, cfgPath  string
	cmd           *nstest.Child // its stderr is the appliance's log
}

func bootAppliance(t *testing.T, cfg string) *rig {
	t.Helper()
	ctx := context.Background()
	ns := nstest.New(t, "e2elan", "e2eapp", "e2ewan")
	r := &rig{lan: ns[0], app: ns[1], wan: ns[2], dir: t.TempDir()}
	if err := netns.Veth(ctx, r.lan, "lan0", "198.18.1.2/24", r.app, "lan0", "", 0); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, r.app, "wan0", "", r.wan, "wan0", "192.0.2.1/24", 0); err != nil {
		t.Fatal(err)
	}
	r.cfgPath = filepath.Join(r.dir, "pqbranch.json")
	r.write(t, cfg)
	r.cmd = nstest.Start(t, r.app, "appliance", "PQB_CONFIG="+r.cfgPath, "PQB_RESOLV="+filepath.Join(r.dir, "resolv.conf"))
	return r
}

// write replaces the config file as an editor would, never half written.
func (r *rig) write(t *testing.T, s string) {
	t.Helper()
	tmp := r.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.cfgPath); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) reload() { r.cmd.Process.Signal(syscall.SIGHUP) }

// TestApplianceReload boots the userland in namespaces and drives a config
// reload through it: a broken file is reported and changes nothing, a good
// one is applied without restart.
func TestApplianceReload(t *testing.T) {
	rg := bootAppliance(t, testConfig("1500", "8080"))
	lan, wan, cfgPath, logs := rg.lan, rg.wan, rg.cfgPath, rg.cmd.Stderr
	write := func(s string) { rg.write(t, s) }

	var r *status.Report
	eventually(t, "status from the LAN", func() (err error) {
		r, err = fetch(lan, "198.18.1.1:8080")
		return err
	})
	if r.Version != "test" || !r.Config.Loaded || len(r.Config.Errors) != 0 {
		t.Fatalf("report %+v", r)
	}
	eventually(t, "all services running", func() error {
		r, err := fetch(lan, "198.18.1.1:8080")
		if err != nil {
			return err
		}
		for _, s := range r.Services {
			if s.State != "running" {
				return errors.New(s.Name + " is " + s.State + ": " + s.LastError)
			}
		}
		// syslog, network, time, firewall, dhcp, dns, ra, tunnel, status:
		// no update service on a host without A/B slots, and status says why.
		if r.Update.Unavailable == "" {
			return errors.New("update section does not say why updates are unavailable")
		}
		if len(r.Services) != 9 {
			return errors.New("services missing")
		}
		return nil
	})
	if err := dropped(wan, "192.0.2.2:8080"); err != nil {
		t.Fatalf("management port from the WAN: %v", err)
	}
	// The boot race: status (and the LAN services) bind the LAN address
	// before network has assigned it; that must not fail.
	if strings.Contains(logs(), "cannot assign requested address") {
		t.Fatal("a service failed to bind an address at start")
	}

	// A typo: reported with file and field, and nothing changes.
	write(testConfig(`"big"`, "8081"))
	rg.reload()
	eventually(t, "config error reported", func() error {
		r, err := fetch(lan, "198.18.1.1:8080")
		if err != nil {
			return err
		}
		if len(r.Config.Errors) == 0 || !strings.Contains(r.Config.Errors[0], cfgPath+": mtu: expected a whole number") {
			return errors.New("errors: " + strings.Join(r.Config.Errors, "; "))
		}
		return nil
	})
	if err := dropped(wan, "192.0.2.2:8080"); err != nil {
		t.Fatalf("after a bad reload, management port from the WAN: %v", err)
	}
	if strings.Contains(logs(), "e2e-secret-psk") {
		t.Fatal("the pre-shared key appeared in the log")
	}

	// The fix moves the management port: the firewall and the endpoint follow.
	write(testConfig("1500", "8081"))
	rg.reload()
	eventually(t, "status on the new port", func() error {
		r, err := fetch(lan, "198.18.1.1:8081")
		if err != nil {
			return err
		}
		if len(r.Config.Errors) != 0 {
			return errors.New("stale errors: " + strings.Join(r.Config.Errors, "; "))
		}
		return nil
	})
	eventually(t, "old port closed by the firewall", func() error { return dropped(lan, "198.18.1.1:8080") })
	if err := dropped(wan, "192.0.2.2:8081"); err != nil {
		t.Fatalf("new management port from the WAN: %v", err)
	}
}
