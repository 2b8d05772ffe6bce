package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/miekg/dns"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/initramfs"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/status"
)

// The generic board's default config (boards/generic-x86_64.config.json):
// its LAN, and the address the test's LAN client takes on it.
const (
	genericLAN    = "192.168.77.1"
	genericClient = "192.168.77.10/24"
	genericBoard  = "generic-x86_64"
)

// genericVM is the generic-x86_64 board as QEMU emulates it: any UEFI PC,
// so the qemu board's machine with virtio NICs and disk, whose drivers the
// generic board carries. No watchdog device: the generic board names
// none.
func genericVM(t *testing.T) *boards.Board {
	t.Helper()
	b := mustBoard(t, genericBoard)
	q := *mustBoard(t, boards.Default).QEMU
	q.Watchdog = ""
	b.QEMU = &q
	return b
}

// TestProdGenericFirstBoot builds a prod image of the generic-x86_64 board
// and boots it in the lab with no site config, as a PC fresh out of its
// box: it takes a WAN lease, answers status on the LAN, and nothing on the
// WAN. The lab's edge never hears from it (the board default has no
// tunnel).
func TestProdGenericFirstBoot(t *testing.T) {
	needLab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	out := t.TempDir()
	var progress bytes.Buffer
	start := time.Now()
	res, err := firmware.Build(ctx, firmware.Options{
		Board: genericBoard, Profile: initramfs.Prod, RepoDir: repoRoot(t), OutDir: out,
		CacheDir: firmware.DefaultCacheDir(), Progress: &progress,
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress.String())
	}
	t.Logf("built %s %s (%s) in %.1fs", res.Manifest.Release.Board, res.Manifest.Release.Version, initramfs.Prod, time.Since(start).Seconds())
	b := genericVM(t)
	def, err := b.DefaultConfigBytes()
	if err != nil {
		t.Fatal(err)
	}
	defCfg, err := config.Parse(b.DefaultConfig, def)
	if err != nil {
		t.Fatal(err)
	}

	l := startLabWith(ctx, t, Options{Board: b, Image: filepath.Join(res.Dir, "disk.img")})
	wanMAC, lanMAC := nicMAC(0), nicMAC(1) // the lab attaches wan, then lan

	boxWAN := waitWANLease(ctx, t, l, wanMAC)
	t.Logf("WAN lease %s for %s (the first NIC), %.0fs after QEMU start", boxWAN, wanMAC, time.Since(l.VM.Started).Seconds())

	t.Run("status on the LAN", func(t *testing.T) {
		if _, err := l.LAN.Run(ctx, "ip", "addr", "add", genericClient, "dev", tapLAN); err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Minute)
		defer scancel()
		addr := net.JoinHostPort(genericLAN, strconv.Itoa(defCfg.Firewall.Port()))
		r, err := status.Poll(sctx, time.Second, func(ctx context.Context) (*status.Report, error) { return l.StatusAt(ctx, addr) },
			func(r *status.Report) bool { return r.Config.Loaded && hasAddr(r, "wan", boxWAN.String()) })
		if err != nil {
			t.Fatalf("no status from %s on the LAN with the WAN lease in it: %v (last report %+v)", addr, err, r)
		}
		t.Logf("status from %s: %s %s board %s slot %s, hostname %q, tunnel %q, config %s (defaults %v), dev key %v",
			addr, r.Version, initramfs.Prod, r.Board, r.Slot, r.Hostname, r.Tunnel.State, r.Config.File, r.Config.Defaults, r.DevKey)
		if r.Board != genericBoard || r.Hostname != defCfg.Hostname || len(r.Config.Errors) > 0 {
			t.Errorf("board %q hostname %q config errors %v; want %s running its default config %q", r.Board, r.Hostname, r.Config.Errors, genericBoard, defCfg.Hostname)
		}
		// The board default has no tunnel: status says so (the metrics'
		// "not configured" state), and the edge never hears from the box.
		if r.Tunnel.State != "not configured" {
			t.Errorf("tunnel %q; the board default has none, so want \"not configured\"", r.Tunnel.State)
		}
		if log := l.Edge.Log(); strings.Contains(log, "received packet: from "+boxWAN.String()+"[") {
			t.Errorf("the edge received IKE from the box, which has no tunnel configured:\n%s", tail(log, 20))
		}
		// The board maps NICs by PCI address: the first the lab attaches
		// (the WAN tap) must be wan, the second lan.
		for _, want := range []struct{ role, mac, addr string }{
			{"wan", wanMAC, boxWAN.String()},
			{"lan", lanMAC, genericLAN},
		} {
			i, ok := roleIface(r, want.role)
			if !ok || !strings.EqualFold(i.MAC, want.mac) || !hasPrefixAddr(i.Addresses, want.addr) {
				t.Errorf("interface of role %s: %+v; want MAC %s with %s", want.role, i, want.mac, want.addr)
				continue
			}
			t.Logf("%s: %s %s %v", want.role, i.Name, i.MAC, i.Addresses)
		}
	})

	t.Run("nothing on the WAN", func(t *testing.T) {
		box := boxWAN.String()
		for _, port := range []int{80, 22, 53, 8080, 9100, 443, defCfg.Firewall.Port()} {
			if err := tcpSilent(l, box, port); err != nil {
				t.Error(err)
			}
		}
		if err := dnsSilent(l, box); err != nil {
			t.Error(err)
		}
		if err := dhcpSilent(l, boxWAN); err != nil {
			t.Error(err)
		}
		// The firewall accepts echo requests on the LAN only
		// (services/firewall: in-lan-ping); on the WAN they are dropped.
		if out, err := l.Site.GW.Run(ctx, "ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", box); err == nil || !strings.Contains(out, " 0 received") {
			t.Errorf("ping from the WAN got an answer:\n%s", out)
		}
		// The probes did reach the box: it answers ARP for its address
		// (with the wan NIC's MAC) while keeping everything else shut.
		neigh, _ := l.Site.GW.Run(ctx, "ip", "neigh", "show", box, "dev", tapWAN)
		if !strings.Contains(strings.ToLower(neigh), strings.ToLower(wanMAC)) {
			t.Errorf("the edge has no neighbour entry for %s at %s; the probes may never have reached the box: %q", box, wanMAC, neigh)
		}
		t.Logf("no answer on the WAN from %s (TCP 80, 22, 53, 8080, 9100, 443; UDP 53, 67; ICMP echo); neighbour: %s", box, strings.TrimSpace(neigh))
	})
}

// nicMAC is the MAC address qemu.Start gives the VM's i-th NIC.
func nicMAC(i int) string { return fmt.Sprintf("52:54:00:12:34:%02x", 0x56+i) }

// waitWANLease waits for the lab's WAN DHCP server to ACK mac, and returns
// the address it leased.
func waitWANLease(ctx context.Context, t *testing.T, l *Lab, mac string) netip.Addr {
	t.Helper()
	re := regexp.MustCompile(`DHCPACK\(` + tapWAN + `\) (\S+) ` + regexp.QuoteMeta(mac))
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if m := re.FindStringSubmatch(l.DHCPLog()); m != nil {
			return netip.MustParseAddr(m[1])
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("no WAN lease for %s; dnsmasq log:\n%s\nconsole:\n%s", mac, tail(l.DHCPLog(), 20), consoleTail(l, 60))
		}
		time.Sleep(time.Second)
	}
}

func roleIface(r *status.Report, role string) (status.Interface, bool) {
	for _, i := range r.Interfaces {
		if i.Role == role {
			return i, true
		}
	}
	return status.Interface{}, false
}

func hasAddr(r *status.Report, role, addr string) bool {
	i, ok := roleIface(r, role)
	return ok && hasPrefixAddr(i.Addresses, addr)
}

// hasPrefixAddr reports whether addrs ("192.0.2.100/24") hold addr.
func hasPrefixAddr(addrs []string, addr string) bool {
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().String() == addr {
			return true
		}
	}
	return false
}

// silence is how long a probe waits for an answer that must not come.
const silence = 3 * time.Second

// tcpSilent connects from the edge to the box's WAN address and port: a
// SYN-ACK or a reset is an answer, only a timeout is silence.
func tcpSilent(l *Lab, box string, port int) error {
	addr := net.JoinHostPort(box, strconv.Itoa(port))
	var conn net.Conn
	err := l.Site.GW.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, silence)
		return err
	})
	if err == nil {
		conn.Close()
		return fmt.Errorf("TCP %s from the WAN: connected", addr)
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		return fmt.Errorf("TCP %s from the WAN: answered (%v); want no answer", addr, err)
	}
	return nil
}

// dnsSilent sends a DNS query to the box's WAN address: a reply or an ICMP
// port unreachable (a read error on the connected socket) is an answer.
func dnsSilent(l *Lab, box string) error {
	addr := net.JoinHostPort(box, "53")
	var conn net.Conn
	if err := l.Site.GW.Do(func() (err error) {
		conn, err = net.Dial("udp4", addr)
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	b, err := q.Pack()
	if err != nil {
		return err
	}
	return udpSilent(conn, b, "DNS "+addr)
}

// dhcpSilent sends a DHCP DISCOVER to the box's WAN address from the
// client port: any reply, to the edge or broadcast, is an answer.
func dhcpSilent(l *Lab, box netip.Addr) error {
	var conn *net.UDPConn
	if err := l.Site.GW.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: dhcpv4.ClientPort})
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	d, err := dhcpv4.NewDiscovery(net.HardwareAddr{0x02, 0, 0x5e, 0x10, 0, 0x99})
	if err != nil {
		return err
	}
	if _, err := conn.WriteToUDPAddrPort(d.ToBytes(), netip.AddrPortFrom(box, dhcpv4.ServerPort)); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Now().Add(silence))
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return nil
			}
			return fmt.Errorf("DHCP to %s:67 from the WAN: %w", box, err)
		}
		if from.Addr() == box {
			return fmt.Errorf("DHCP to %s:67 from the WAN: answered with %d bytes", box, n)
		}
	}
}

// udpSilent writes b on a connected UDP socket and waits for anything.
func udpSilent(conn net.Conn, b []byte, what string) error {
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	conn.SetReadDeadline(time.Now().Add(silence))
	n, err := conn.Read(make([]byte, 1500))
	if err == nil {
		return fmt.Errorf("%s from the WAN: answered with %d bytes", what, n)
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		return fmt.Errorf("%s from the WAN: answered (%v); want no answer", what, err)
	}
	return nil
}
