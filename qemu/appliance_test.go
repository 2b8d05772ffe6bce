package qemu

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/services/supervise"
)

// persistHostname is what the test writes into the config on /data before
// the reboot; seeing it after the reboot proves the file survived.
const persistHostname = "branch-persist"

// TestApplianceInQEMU boots the default dev image as a freshly flashed box
// between a DHCP-serving WAN and a LAN host, checks the running appliance
// from the LAN, crashes one service, then changes the config on /data and
// power-cycles the box to see it survive. Two boots in all: under TCG each
// costs up to a minute.
func TestApplianceInQEMU(t *testing.T) {
	img, b := defaultImage(t)
	m, err := firmware.ReadManifest(filepath.Join(filepath.Dir(img), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	net := newApplianceNet(t)
	state := t.TempDir() // the box's disk overlay and NVRAM, kept across boots
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	vm := bootAppliance(ctx, t, b, img, net, state, m.Release.Version)
	waitConsole(ctx, t, vm, `^init: data: first boot: created an ext4 file system on /dev/vda3$`)
	waitConsole(ctx, t, vm, `^init: data: mounted /dev/vda3 \(pqb-data\) on /data$`)
	waitConsole(ctx, t, vm, `first boot: wrote the board's default config.*file=/data/pqbranch.json`)

	r, err := net.waitStatus(ctx, func(r *status.Report) bool { return wanLease(r).IsValid() })
	if err != nil {
		t.Fatalf("no DHCP address on the WAN in the status report: %v\nreport: %+v\ndnsmasq:\n%s\nconsole:\n%s", err, r, net.dhcpTranscript(), vm.Console())
	}
	lease := wanLease(r)
	t.Logf("WAN lease %s after %.1fs", lease, time.Since(vm.Started).Seconds())
	checkReport(t, r, m.Release.Version)
	if !strings.Contains(net.dhcpTranscript(), "DHCPACK(wan0) "+lease.String()) {
		t.Errorf("dnsmasq did not log the lease %s:\n%s", lease, net.dhcpTranscript())
	}
	if out, err := net.lan.Run(ctx, "ping", "-c", "3", "-i", "0.3", "-W", "3", lanAddress); err != nil {
		t.Errorf("LAN host cannot ping the appliance: %v\n%s", err, out)
	}

	t.Run("crashed service restarts alone", func(t *testing.T) {
		crashService(ctx, t, vm, net, "time")
	})

	// Change the config on the data partition, apply it, and power-cycle.
	writeConfig(ctx, t, vm, persistHostname)
	if r, err := net.waitStatus(ctx, func(r *status.Report) bool { return r.Hostname == persistHostname }); err != nil {
		t.Fatalf("new config not applied: %v\nstatus: %+v\nconsole:\n%s", err, r, vm.Console())
	}
	if err := vm.Send("reboot\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-vm.Exited():
	case <-ctx.Done():
		t.Fatalf("the appliance did not reboot\nconsole:\n%s", vm.Console())
	}
	// A clean shutdown stops the services and unmounts /data first.
	if c := vm.Console(); !strings.Contains(c, `msg="shutting down" action=reboot`) || strings.Contains(c, "shutdown not clean") || strings.Contains(c, "Kernel panic") {
		t.Errorf("reboot was not a clean shutdown:\n%s", c)
	}
	vm.Stop()

	vm = bootAppliance(ctx, t, b, img, net, state, m.Release.Version)
	waitConsole(ctx, t, vm, `^init: data: mounted /dev/vda3 \(pqb-data\) on /data$`)
	r, err = net.waitStatus(ctx, func(r *status.Report) bool { return wanLease(r).IsValid() })
	if err != nil {
		t.Fatalf("second boot: no status with a WAN lease: %v\nconsole:\n%s", err, vm.Console())
	}
	if r.Hostname != persistHostname || r.Config.Defaults || !r.Config.Loaded || len(r.Config.Errors) > 0 {
		t.Errorf("config on /data did not survive the reboot: hostname %q, config %+v\nconsole:\n%s", r.Hostname, r.Config, vm.Console())
	}
	for _, never := range []string{"created an ext4 file system", "first boot: wrote"} {
		if strings.Contains(vm.Console(), never) {
			t.Errorf("second boot repeated first-boot work (%q):\n%s", never, vm.Console())
		}
	}
}

// bootAppliance starts the VM on state with the test's networks and waits for
// the banner. The VM is stopped when the test ends.
func bootAppliance(ctx context.Context, t *testing.T, b *boards.Board, img string, net *applianceNet, state, version string) *VM {
	t.Helper()
	vm, err := Start(ctx, Config{Board: b, Image: img, NICs: []*os.File{net.wanTap, net.lanTap}, NoReboot: true, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop() })
	banner := `^pqbranch ` + regexp.QuoteMeta(version) + ` board=qemu-x86_64 slot=A$`
	line := waitConsole(ctx, t, vm, banner)
	t.Logf("%s after %.1fs under %s", line, time.Since(vm.Started).Seconds(), vm.Accel)
	return vm
}

func waitConsole(ctx context.Context, t *testing.T, vm *VM, pattern string) string {
	t.Helper()
	line, err := vm.WaitLine(ctx, regexp.MustCompile(pattern))
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, vm.Console())
	}
	return line
}

// wanLease is the WAN interface's IPv4 address if it lies in the DHCP range.
func wanLease(r *status.Report) netip.Addr {
	first, last := netip.MustParseAddr(dhcpFirst), netip.MustParseAddr(dhcpLast)
	for _, ifc := range r.Interfaces {
		if ifc.Role != "wan" {
			continue
		}
		for _, a := range ifc.Addresses {
			p, err := netip.ParsePrefix(a)
			if err == nil && p.Addr().Compare(first) >= 0 && p.Addr().Compare(last) <= 0 {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

func checkReport(t *testing.T, r *status.Report, version string) {
	t.Helper()
	if r.Version != version || r.Board != "qemu-x86_64" || r.Slot != "A" {
		t.Errorf("status identifies %s/%s/%s, want %s/qemu-x86_64/A", r.Version, r.Board, r.Slot, version)
	}
	if r.Config.File != "/data/pqbranch.json" || !r.Config.Loaded || r.Config.Defaults || len(r.Config.Errors) > 0 {
		t.Errorf("not running from the config on /data: %+v", r.Config)
	}
	var lanOK bool
	for _, ifc := range r.Interfaces {
		if ifc.Role == "lan" && ifc.Up && contains(ifc.Addresses, lanAddress+"/24") {
			lanOK = true
		}
	}
	if !lanOK {
		t.Errorf("no LAN interface with %s/24 in %+v", lanAddress, r.Interfaces)
	}
	if len(r.Services) == 0 {
		t.Error("no services in the status report")
	}
	for _, s := range r.Services {
		if s.State != supervise.Running {
			t.Errorf("service %s is %s (%s)", s.Name, s.State, s.LastError)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// crashService crashes name through the dev image's crash applet and checks
// that it came back, restarted once, while no other service was touched.
func crashService(ctx context.Context, t *testing.T, vm *VM, net *applianceNet, name string) {
	before, err := net.fetchStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prev := map[string]supervise.State{}
	for _, s := range before.Services {
		prev[s.Name] = s
	}
	if _, ok := prev[name]; !ok {
		t.Fatalf("no service %q in %+v", name, before.Services)
	}
	if err := vm.Send("crash " + name + "\r"); err != nil {
		t.Fatal(err)
	}
	waitConsole(ctx, t, vm, `crash: `+name+` crashed`)
	after, err := net.waitStatus(ctx, func(r *status.Report) bool {
		for _, s := range r.Services {
			if s.Name == name {
				return s.Restarts == prev[name].Restarts+1 && s.State == supervise.Running
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("%s did not come back after its crash: %v\nstatus: %+v\nconsole:\n%s", name, err, after, vm.Console())
	}
	for _, s := range after.Services {
		if s.Name == name {
			if !strings.Contains(s.LastError, "crash injected") {
				t.Errorf("%s last error %q, want the injected panic", name, s.LastError)
			}
			continue
		}
		p := prev[s.Name]
		// A restart of any kind moves Since; a failure also counts.
		if s.Restarts != p.Restarts || !s.Since.Equal(p.Since) || s.State != supervise.Running {
			t.Errorf("service %s was disturbed by %s's crash: before %+v, after %+v", s.Name, name, p, s)
		}
	}
}

// writeConfig changes the host name in the config on /data, typed on the
// dev console, and reloads it. Typing is slow (the shell's line editor
// redraws the line per key), so the shell edits the file: it replaces the
// first "pqbranch" in it, which in the board default is the host name.
func writeConfig(ctx context.Context, t *testing.T, vm *VM, hostname string) {
	t.Helper()
	def, err := os.ReadFile(filepath.Join("..", "boards", "qemu-x86_64.config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var edited struct{ Hostname string }
	if err := json.Unmarshal([]byte(strings.Replace(string(def), "pqbranch", hostname, 1)), &edited); err != nil || edited.Hostname != hostname {
		t.Fatalf("the board default config no longer starts with the host name pqbranch (%v); adapt writeConfig", err)
	}
	// The shell computes the marker, so the echoed command line cannot match.
	cmd := `c=$(cat /data/pqbranch.json) && echo "${c/pqbranch/` + hostname + `}" > /data/pqbranch.json && reload && echo config-written-$((40+2))` + "\r"
	if err := vm.Send(cmd); err != nil {
		t.Fatal(err)
	}
	waitConsole(ctx, t, vm, `config-written-42`)
}
