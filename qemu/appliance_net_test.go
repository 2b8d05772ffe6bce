package qemu

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/status"
)

// Addresses of the appliance test's networks (RFC 5737 and RFC 2544 ranges).
const (
	wanServer  = "192.0.2.1/24" // dnsmasq, in the WAN namespace
	dhcpFirst  = "192.0.2.100"
	dhcpLast   = "192.0.2.149"
	lanHost    = "198.18.1.10/24" // the LAN-side host
	lanAddress = "198.18.1.1"     // the appliance's LAN address in the board default config
)

// applianceNet is the VM's surroundings: a WAN namespace with a DHCP server
// and a LAN namespace with one host, each holding the VM's tap. Taps and
// namespaces outlive single boots, so a reboot finds the same networks.
type applianceNet struct {
	wan, lan       *netns.NS
	wanTap, lanTap *os.File
	dhcpLog        string
}

// newApplianceNet builds the networks and starts dnsmasq; t.Cleanup tears
// everything down, pass or fail.
func newApplianceNet(t *testing.T) *applianceNet {
	t.Helper()
	ctx := context.Background()
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is needed as the WAN DHCP server: %v (apt-get install dnsmasq; .ci/run installs it)", err)
	}
	n := &applianceNet{}
	if n.wan, err = netns.New(ctx, "awan"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.wan.Close() })
	if n.lan, err = netns.New(ctx, "alan"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.lan.Close() })
	if n.wanTap, err = Tap(n.wan, "wan0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.wanTap.Close() })
	if n.lanTap, err = Tap(n.lan, "lan0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.lanTap.Close() })
	if _, err := n.wan.Run(ctx, "ip", "addr", "add", wanServer, "dev", "wan0"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.lan.Run(ctx, "ip", "addr", "add", lanHost, "dev", "lan0"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	n.dhcpLog = filepath.Join(dir, "dnsmasq.log")
	// No DNS (port 0), no system config; the lease file in the test's dir.
	cmd := n.wan.Command(ctx, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=wan0", "--bind-interfaces", "--log-dhcp", "--log-facility="+n.dhcpLog,
		"--dhcp-range="+dhcpFirst+","+dhcpLast+",255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return n
}

// dhcpTranscript is what dnsmasq logged, for failure messages.
func (n *applianceNet) dhcpTranscript() string {
	b, _ := os.ReadFile(n.dhcpLog)
	return string(b)
}

// fetchStatus reads the status report over HTTP from the LAN host.
func (n *applianceNet) fetchStatus(ctx context.Context) (*status.Report, error) {
	addr := net.JoinHostPort(lanAddress, "80")
	var conn net.Conn
	// The socket is created inside the LAN namespace and keeps it.
	if err := n.lan.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	}); err != nil {
		return nil, fmt.Errorf("connect to the status endpoint from the LAN: %w", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	b, err := status.Fetch(ctx, client, "http://"+addr+"/status")
	if err != nil {
		return nil, err
	}
	return status.Decode(b)
}

// waitStatus polls the status endpoint until ok accepts a report, for at
// most two minutes: long enough for a TCG boot to get its lease, short
// enough that a failure shows its console while the test still runs.
func (n *applianceNet) waitStatus(ctx context.Context, ok func(*status.Report) bool) (*status.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return status.Poll(ctx, time.Second, n.fetchStatus, ok)
}
