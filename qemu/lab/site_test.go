package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/miekg/dns"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/provision"
	"github.com/pqbranch/pqbranch/services/status"
)

// The site the provisioning test flashes: names that neither the image nor
// the board default carry, so seeing them proves the flashed config runs.
const (
	siteHostname = "branch-flashed-7"
	corpDomain   = "corp.pqbranch.test"
	// Answered only by the dc resolver, behind the tunnel.
	intranetName = "intranet." + corpDomain
	// Answered only by the WAN resolver, the branch's ISP.
	publicName = "www.example.test"
)

var (
	intranetAddr = netip.MustParseAddr("198.19.0.80")
	publicAddr   = netip.MustParseAddr("192.0.2.80")
	// Two LAN hosts, by locally administered MAC address.
	firstHost  = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}
	secondHost = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x02}
)

// siteConfig is the qemu board's default config as a site would write it
// for one branch: its own hostname and revision (serial, 0 for none), the
// appliance as the LAN's DHCP server and resolver, and split DNS for the
// data centre's domain. edit, when set, changes it further.
func siteConfig(t *testing.T, hostname string, serial int64, edit func(c map[string]any)) []byte {
	t.Helper()
	return defaultConfigWith(t, func(c map[string]any) {
		c["hostname"] = hostname
		if serial != 0 {
			c["serial"] = serial
		}
		c["firewall"].(map[string]any)["lan"] = map[string]any{"dhcp": true, "dns": true}
		c["dns"] = map[string]any{"internal": []any{
			map[string]any{"domain": corpDomain, "servers": []string{edge.DCAddr}},
		}}
		if edit != nil {
			edit(c)
		}
	})
}

// defaultConfigWith is the default board's default config changed by edit.
func defaultConfigWith(t *testing.T, edit func(c map[string]any)) []byte {
	t.Helper()
	b, err := boards.Load(boards.Default)
	if err != nil {
		t.Fatal(err)
	}
	def, err := b.DefaultConfigBytes()
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(def, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flashSite writes the default image with cfg on its data partition into
// a file of the test's, as `pqbuild flash -config` writes a disk.
func flashSite(ctx context.Context, t *testing.T, cfg []byte) string {
	t.Helper()
	img, _ := defaultImage(t)
	disk := filepath.Join(t.TempDir(), "flashed.img")
	var progress bytes.Buffer
	if err := firmware.Flash(ctx, img, disk, firmware.FlashOptions{Config: cfg, ConfigName: "site.json", Progress: &progress}); err != nil {
		t.Fatalf("flash: %v\n%s", err, progress.String())
	}
	t.Logf("flash: %s", strings.TrimSpace(tail(progress.String(), 2)))
	return disk
}

// TestSiteProvisioning flashes the default image with a site's config,
// as `pqbuild flash -config` does, and boots it between the edge and a
// LAN client. It shows the site's config in force from the first boot;
// the LAN client getting its address, router and resolver from the
// appliance by DHCP; names resolved through the appliance, the data
// centre's domain by the dc resolver through the tunnel and the rest by
// the WAN's resolver; the metrics endpoint with the tunnel established
// and its ESP bytes; after a power cut, the client's lease kept; and two
// provisioning sticks, each plugged in for a boot: a bad config changes
// nothing and status shows its errors, a newer one replaces the config.
func TestSiteProvisioning(t *testing.T) {
	needLab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	siteJSON := siteConfig(t, siteHostname, 0, nil)
	site, err := config.Parse("site.json", siteJSON)
	if err != nil {
		t.Fatalf("the site config does not validate: %v", err)
	}
	pool, ok := site.DHCP()
	if !ok {
		t.Fatal("the site config has no LAN subnet to serve")
	}
	disk := flashSite(ctx, t, siteJSON)

	l := startLabWith(ctx, t, Options{
		Board: mustBoard(t, boards.Default), Image: disk, StateDir: t.TempDir(),
		WANDNS: map[string]netip.Addr{publicName: publicAddr},
		DCDNS:  map[string]netip.Addr{intranetName: intranetAddr},
	})
	r := waitSite(ctx, t, l, siteHostname)
	t.Logf("booted into the site config: hostname %q, tunnel %s (%s+%s), %.0fs after QEMU start",
		r.Hostname, r.Tunnel.State, r.Tunnel.KE, strings.Join(r.Tunnel.AddKE, "+"), time.Since(l.VM.Started).Seconds())

	var firstAddr netip.Addr
	var leasedAt time.Time
	t.Run("DHCP on the LAN", func(t *testing.T) {
		ack := lanLease(ctx, t, l, firstHost)
		leasedAt = time.Now()
		firstAddr = checkAck(t, ack, pool)
		t.Logf("%s leased %s for %v: router %v, DNS %v, server %v", firstHost, firstAddr,
			ack.IPAddressLeaseTime(0), ack.Router(), ack.DNS(), ack.ServerIdentifier())
	})

	t.Run("DNS through the appliance", func(t *testing.T) {
		// The box learnt the WAN resolver from its WAN lease; the
		// forwarder asks it for public names.
		if got := resolveA(ctx, t, l, publicName); got != publicAddr {
			t.Errorf("%s resolved to %v through the appliance; the WAN resolver says %v", publicName, got, publicAddr)
		}
		if l.WANResolver.Asked(publicName) == 0 {
			t.Errorf("the WAN resolver was never asked for %s (it saw: %s)", publicName, l.WANResolver.AskedNames())
		}
		// The data centre's domain goes only to the dc resolver, which
		// only the tunnel reaches.
		if got := resolveA(ctx, t, l, intranetName); got != intranetAddr {
			t.Errorf("%s resolved to %v through the appliance; the dc resolver says %v", intranetName, got, intranetAddr)
		}
		if l.DCResolver.Asked(intranetName) == 0 {
			t.Errorf("the dc resolver was never asked for %s (it saw: %s)", intranetName, l.DCResolver.AskedNames())
		}
		if n := l.WANResolver.Asked(intranetName); n != 0 {
			t.Errorf("the internal name %s leaked to the WAN resolver %d times", intranetName, n)
		}
		if n := l.DCResolver.Asked(publicName); n != 0 {
			t.Errorf("the public name %s went to the dc resolver %d times", publicName, n)
		}
		t.Logf("WAN resolver saw: %s; dc resolver saw: %s", l.WANResolver.AskedNames(), l.DCResolver.AskedNames())
	})

	t.Run("metrics", func(t *testing.T) {
		if out, ok := waitPing(withTimeout(ctx, 30*time.Second), l); !ok {
			t.Fatalf("no traffic through the tunnel to count:\n%s", out)
		}
		var body string
		// The counters are read from the kernel's SAs at each scrape;
		// poll until the pings show in both directions.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			if body, err = l.Metrics(ctx); err != nil {
				t.Fatal(err)
			}
			in, _ := metric(body, `pqbranch_tunnel_esp_bytes{direction="in"}`)
			out, _ := metric(body, `pqbranch_tunnel_esp_bytes{direction="out"}`)
			if in > 0 && out > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		for _, want := range []struct {
			series string
			ok     func(float64) bool
			what   string
		}{
			{`pqbranch_tunnel_state{state="established"}`, func(v float64) bool { return v == 1 }, "1"},
			{`pqbranch_tunnel_state{state="down"}`, func(v float64) bool { return v == 0 }, "0"},
			{`pqbranch_tunnel_esp_bytes{direction="in"}`, func(v float64) bool { return v > 0 }, "> 0"},
			{`pqbranch_tunnel_esp_bytes{direction="out"}`, func(v float64) bool { return v > 0 }, "> 0"},
			{`pqbranch_tunnel_esp_packets{direction="in"}`, func(v float64) bool { return v > 0 }, "> 0"},
			{`pqbranch_dhcp_leases`, func(v float64) bool { return v >= 1 }, ">= 1"},
			{`pqbranch_dns_queries_total{result="internal"}`, func(v float64) bool { return v >= 1 }, ">= 1"},
			{`pqbranch_config_errors`, func(v float64) bool { return v == 0 }, "0"},
		} {
			v, ok := metric(body, want.series)
			if !ok || !want.ok(v) {
				t.Errorf("metrics: %s = %v (present %v); want %s", want.series, v, ok, want.what)
				continue
			}
			t.Logf("metrics: %s %v", want.series, v)
		}
		if t.Failed() {
			t.Logf("metrics scraped:\n%s", body)
		}
	})

	t.Run("lease kept across a power cut", func(t *testing.T) {
		if !firstAddr.IsValid() {
			t.Fatal("no lease from before the power cut to keep")
		}
		// The server writes its lease file within two seconds of a
		// change (dhcpd.Options.FlushEvery); cut only once it has.
		if d := 5*time.Second - time.Since(leasedAt); d > 0 {
			time.Sleep(d)
		}
		if err := l.PowerCut(); err != nil {
			t.Fatal(err)
		}
		if err := l.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		waitSite(ctx, t, l, siteHostname)
		// Another host asks first: on an empty table it would get the
		// first free address, which may well be the first host's.
		other := checkAck(t, lanLease(ctx, t, l, secondHost), pool)
		if other == firstAddr {
			t.Fatalf("after the power cut %s got %s, the address leased to %s before it", secondHost, other, firstHost)
		}
		again := checkAck(t, lanLease(ctx, t, l, firstHost), pool)
		if again != firstAddr {
			t.Fatalf("after the power cut %s got %s; it had %s", firstHost, again, firstAddr)
		}
		t.Logf("after the power cut: %s got %s, %s got its %s back", secondHost, other, firstHost, again)
	})

	// A provisioning stick is read at boot: one with a bad config, though
	// a higher serial, changes nothing and says why; one with a newer
	// valid config replaces the flashed one.
	t.Run("stick with a bad config", func(t *testing.T) {
		bad := siteConfig(t, "branch-bad-stick", 5, func(c map[string]any) { c["mtu"] = 100 })
		if _, err := config.Parse("stick", bad); err == nil || !strings.Contains(err.Error(), "mtu") {
			t.Fatalf("the bad stick's config must fail validation on mtu; got %v", err)
		}
		r := bootWithStick(ctx, t, l, bad, func(r *status.Report) bool {
			return r.Provision != nil && r.Provision.Outcome == provision.Rejected && Established(r)
		})
		if r.Hostname != siteHostname || len(r.Config.Errors) > 0 || r.Config.Defaults {
			t.Errorf("after the bad stick: hostname %q, config errors %v, defaults %v; want the flashed config %q untouched",
				r.Hostname, r.Config.Errors, r.Config.Defaults, siteHostname)
		}
		if !slices.ContainsFunc(r.Provision.Errors, func(e string) bool { return strings.Contains(e, "mtu") }) {
			t.Errorf("status does not show the stick's mtu error: %+v", r.Provision)
		}
		t.Logf("bad stick: %s on %s, errors %q; hostname still %q", r.Provision.Outcome, r.Provision.Device, r.Provision.Errors, r.Hostname)
	})

	t.Run("stick with a newer config", func(t *testing.T) {
		const stickHostname = "branch-stick-8"
		r := bootWithStick(ctx, t, l, siteConfig(t, stickHostname, 6, nil), func(r *status.Report) bool {
			return r.Provision != nil && r.Provision.Outcome == provision.Installed && r.Hostname == stickHostname && Established(r)
		})
		if r.Provision.Serial != 6 || len(r.Config.Errors) > 0 || r.Config.Defaults {
			t.Errorf("after the newer stick: %+v, config errors %v, defaults %v", r.Provision, r.Config.Errors, r.Config.Defaults)
		}
		t.Logf("newer stick: %s serial %d from %s; hostname now %q, tunnel %s", r.Provision.Outcome, r.Provision.Serial, r.Provision.Device, r.Hostname, r.Tunnel.State)
	})
}

// bootWithStick power-cycles the box with a provisioning stick holding cfg
// plugged in, and waits for a status report that ok accepts.
func bootWithStick(ctx context.Context, t *testing.T, l *Lab, cfg []byte, ok func(*status.Report) bool) *status.Report {
	t.Helper()
	stick := filepath.Join(t.TempDir(), "stick.img")
	if err := provision.WriteStick(stick, cfg); err != nil {
		t.Fatal(err)
	}
	if err := l.PowerCut(); err != nil {
		t.Fatal(err)
	}
	l.InsertStick(stick)
	if err := l.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	r, err := l.WaitStatus(ctx, ok)
	if err != nil {
		desc := "no report"
		if r != nil {
			desc = fmt.Sprintf("hostname %q, provision %+v, config %+v, tunnel %s", r.Hostname, r.Provision, r.Config, r.Tunnel.State)
		}
		t.Fatalf("after booting with the stick: %v; last status: %s", err, desc)
	}
	return r
}

func mustBoard(t *testing.T, name string) *boards.Board {
	t.Helper()
	b, err := boards.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitSite waits until the box runs the site config named hostname, from
// the file and without errors, with its tunnel up.
func waitSite(ctx context.Context, t *testing.T, l *Lab, hostname string) *status.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	r, err := l.WaitStatus(ctx, func(r *status.Report) bool {
		return r.Hostname == hostname && r.Config.Loaded && !r.Config.Defaults && Established(r)
	})
	if err != nil {
		desc := "no report"
		if r != nil {
			desc = fmt.Sprintf("hostname %q, config %+v, tunnel %s %s", r.Hostname, r.Config, r.Tunnel.State, r.Tunnel.LastError)
		}
		t.Fatalf("the box does not run the site config %q with its tunnel up: %v; last status: %s", hostname, err, desc)
	}
	if len(r.Config.Errors) > 0 {
		t.Errorf("config errors: %v", r.Config.Errors)
	}
	return r
}

// lanLease runs a whole DHCP exchange on the LAN client's tap as the host
// with MAC address hw, until it gets an ACK (the server may still be
// starting) or a minute passes.
func lanLease(ctx context.Context, t *testing.T, l *Lab, hw net.HardwareAddr) *dhcpv4.DHCPv4 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var lease *nclient4.Lease
		err := l.LAN.Do(func() error {
			c, err := nclient4.New(tapLAN, nclient4.WithHWAddr(hw), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
			if err != nil {
				return err
			}
			defer c.Close()
			lease, err = c.Request(ctx)
			return err
		})
		if err == nil {
			return lease.ACK
		}
		if ctx.Err() != nil {
			t.Fatalf("no DHCP lease on the LAN for %s: %v", hw, err)
		}
		time.Sleep(time.Second)
	}
}

// checkAck asserts what every ACK on the site's LAN must say: an address
// from the pool, the appliance as router and resolver. It returns the
// address.
func checkAck(t *testing.T, ack *dhcpv4.DHCPv4, pool config.DHCPSettings) netip.Addr {
	t.Helper()
	yi, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || yi.Less(pool.Start) || pool.End.Less(yi) {
		t.Errorf("leased %v, outside the pool %v-%v", ack.YourIPAddr, pool.Start, pool.End)
	}
	lan := net.ParseIP(ApplianceLAN)
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(lan) {
		t.Errorf("router option %v; want [%s]", r, ApplianceLAN)
	}
	if d := ack.DNS(); len(d) != 1 || !d[0].Equal(lan) {
		t.Errorf("DNS option %v; want [%s]", d, ApplianceLAN)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("reply %s; want an ACK", ack.MessageType())
	}
	return yi
}

// resolveA asks the appliance's DNS forwarder for name's A record from the
// LAN client, as the client's stub resolver would (the resolver its lease
// names), and returns the address. It retries for a while: the forwarder
// answers SERVFAIL until its upstream answers.
func resolveA(ctx context.Context, t *testing.T, l *Lab, name string) netip.Addr {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := lookupA(ctx, l, name)
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				t.Errorf("%s through %s: %v", name, ApplianceLAN, err)
			}
			return got
		}
		time.Sleep(time.Second)
	}
}

func lookupA(ctx context.Context, l *Lab, name string) (netip.Addr, error) {
	var conn net.Conn
	if err := l.LAN.Do(func() (err error) {
		conn, err = net.Dial("udp4", net.JoinHostPort(ApplianceLAN, "53"))
		return err
	}); err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil {
		return netip.Addr{}, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return netip.Addr{}, fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			addr, _ := netip.AddrFromSlice(a.A.To4())
			return addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no A record in the answer: %v", r.Answer)
}

// metric returns the value of one series (name and labels exactly as
// exposed) in a Prometheus text exposition.
func metric(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
