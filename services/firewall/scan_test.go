package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// The scanner runs as a child process inside the WAN namespace (via
// `ip netns exec`), because a Go program's goroutines may run on any thread
// and each socket must be created inside the namespace.
const scanEnv = "PQB_FIREWALL_SCAN"

func TestMain(m *testing.M) {
	nstest.LockMainThread()
	if target := os.Getenv(scanEnv); target != "" {
		lo, _ := strconv.Atoi(os.Getenv(scanEnv + "_LO"))
		hi, _ := strconv.Atoi(os.Getenv(scanEnv + "_HI"))
		json.NewEncoder(os.Stdout).Encode(scan(target, lo, hi))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// scan probes every TCP and UDP port in [lo, hi] on target and returns those
// that answered, as "tcp/22" or "udp/500". A TCP answer is a SYN-ACK or a
// RST; a UDP answer is a reply or an ICMP port unreachable.
func scan(target string, lo, hi int) []string {
	const (
		parallel = 3000
		wait     = 400 * time.Millisecond
	)
	var (
		mu       sync.Mutex
		answered []string
		wg       sync.WaitGroup
		sem      = make(chan struct{}, parallel)
	)
	hit := func(s string) {
		mu.Lock()
		answered = append(answered, s)
		mu.Unlock()
	}
	for port := lo; port <= hi; port++ {
		for _, proto := range []string{"tcp", "udp"} {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				addr := net.JoinHostPort(target, strconv.Itoa(port))
				name := fmt.Sprintf("%s/%d", proto, port)
				if proto == "tcp" {
					c, err := net.DialTimeout("tcp", addr, wait)
					if err == nil {
						c.Close()
						hit(name)
					} else if errors.Is(err, syscall.ECONNREFUSED) {
						hit(name)
					}
					return
				}
				c, err := net.Dial("udp", addr)
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(wait))
				if _, err := c.Write([]byte("probe")); err != nil {
					return
				}
				buf := make([]byte, 64)
				if _, err := c.Read(buf); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
					hit(name)
				}
			}()
		}
	}
	wg.Wait()
	slices.Sort(answered)
	return answered
}

func runScan(t *testing.T, from *netns.NS, target string, lo, hi int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := from.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), scanEnv+"="+target, fmt.Sprintf("%s_LO=%d", scanEnv, lo), fmt.Sprintf("%s_HI=%d", scanEnv, hi))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scanner: %v", err)
	}
	var answered []string
	if err := json.Unmarshal(out, &answered); err != nil {
		t.Fatalf("scanner output %q: %v", out, err)
	}
	return answered
}

// listen opens TCP listeners and UDP echo responders on ports inside ns and
// returns a counter of UDP datagrams received per port.
func listen(t *testing.T, ns *netns.NS, ports []int) *counter {
	t.Helper()
	cnt := &counter{n: map[int]int{}}
	var closers []func() error
	err := ns.Do(func() error {
		for _, p := range ports {
			l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
			if err != nil {
				return err
			}
			closers = append(closers, l.Close)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			u, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", p))
			if err != nil {
				return err
			}
			closers = append(closers, u.Close)
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := u.ReadFrom(buf)
					if err != nil {
						return
					}
					cnt.add(p)
					u.WriteTo(buf[:n], from)
				}
			}()
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return cnt
}

type counter struct {
	mu sync.Mutex
	n  map[int]int
}

func (c *counter) add(p int) {
	c.mu.Lock()
	c.n[p]++
	c.mu.Unlock()
}

func (c *counter) get(p int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}

// listenerPorts is a spread of ports across the whole range, plus the ones
// an appliance is likely to use.
func listenerPorts() []int {
	ports := []int{22, 53, 67, 68, 80, 123, 443, 500, 4500, 8080, 8443, 65535}
	for p := 1; p <= 1024; p++ {
		ports = append(ports, p)
	}
	for p := 1025; p <= 65535; p += 97 {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// TestWANScanOnlyIKE scans every TCP and UDP port of the appliance's WAN
// address while ~1700 ports listen on all addresses: only IKE answers.
func TestWANScanOnlyIKE(t *testing.T) {
	tp := newTopo(t)
	listen(t, tp.app, listenerPorts())
	// Control: without the firewall the scanner does see the listeners, so
	// silence later means the firewall dropped the probes.
	if got := runScan(t, tp.wan, "192.0.2.2", 1, 30); len(got) != 60 {
		t.Fatalf("control scan without firewall: %d answers, want 60 (scanner broken?): %v", len(got), got)
	}
	apply(t, tp.app, spec(8080, true))
	start := time.Now()
	got := runScan(t, tp.wan, "192.0.2.2", 1, 65535)
	t.Logf("scanned 131070 ports in %v", time.Since(start).Round(time.Second))
	if want := []string{"udp/4500", "udp/500"}; !slices.Equal(got, want) {
		t.Fatalf("ports answering from the WAN: %v, want only %v", got, want)
	}
	// The management port listens and is reachable from the LAN only.
	if got := runScan(t, tp.lan, "198.18.1.1", 8079, 8081); !slices.Equal(got, []string{"tcp/8080"}) {
		t.Fatalf("from the LAN: %v, want [tcp/8080]", got)
	}
}

// TestWANScanNothingWithoutTunnel: the first-boot default of a real board
// has no tunnel, and then not even IKE answers from the WAN, while the LAN
// keeps the management port, DHCP and DNS.
func TestWANScanNothingWithoutTunnel(t *testing.T) {
	tp := newTopo(t)
	listen(t, tp.app, listenerPorts())
	s := Spec{WAN: "wan0", LAN: "lan0", ManagementPort: 80, ServeDHCP: true, ServeDNS: true, NoTunnel: true}
	apply(t, tp.app, s)
	if got := runScan(t, tp.wan, "192.0.2.2", 1, 5000); len(got) != 0 {
		t.Fatalf("ports answering from the WAN with no tunnel: %v, want none", got)
	}
	if got := runScan(t, tp.lan, "198.18.1.1", 50, 80); !slices.Equal(got, []string{"tcp/53", "tcp/80", "udp/53", "udp/67"}) {
		t.Fatalf("from the LAN: %v, want DNS, DHCP and the management port", got)
	}
}
