// Package lab builds the whole test world around one appliance VM: the edge
// site (strongSwan 6.1 as the responder, with a data-centre host "dc" behind
// it), DHCP and time (SNTP) on the WAN, and a LAN namespace with a client host;
// on request a resolver on the WAN and one on the dc host (Options.WANDNS,
// DCDNS) and a USB stick in the box (Options.USBStick). `make run` and the
// end-to-end tests use it; Close tears all of it down.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/qemu"
	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Addresses, matching the qemu-x86_64 board's default config.
const (
	LANNet         = "198.18.1.0/24"
	ApplianceLAN   = "198.18.1.1"
	ClientAddr     = "198.18.1.10"
	dhcpRange      = "192.0.2.100,192.0.2.150,255.255.255.0,1h"
	edgeID         = "edge.pqbranch.test"
	branchID       = "branch.pqbranch.test"
	defaultPSK     = "pqbranch-qemu-test-psk-change-me"
	DefaultIKE     = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
	defaultESP     = "aes256gcm16"
	tapWAN, tapLAN = "wan0", "lan0"
)

// Options configure a lab.
type Options struct {
	Board *boards.Board
	Image string
	// Console and Stdin are the VM's serial console (see qemu.Config).
	Console io.Writer
	Stdin   *os.File
	// Progress receives setup messages (strongSwan root bootstrap).
	Progress io.Writer
	// BeforeBoot, when set, runs once the world is wired and before QEMU
	// starts, e.g. to watch the WAN from the appliance's first frame.
	BeforeBoot func(*Lab) error
	// StateDir, when set, keeps the box's disk and NVRAM there (see
	// qemu.Config.StateDir), so PowerCut and PowerOn act on one box.
	StateDir string
	// Time, when set, is what the lab's time server says at the start.
	Time time.Time
	// LiveBundle, when set, is the bundle file the update server offers
	// as update.pqb, read afresh at every request (make run serves
	// out/<board>/update.pqb, so a rebuild is offered at once).
	LiveBundle string
	// WANDNS, when set, are the names (A records) a resolver on the
	// edge's WAN address (192.0.2.1:53) answers, and the WAN DHCP hands
	// that resolver out: the branch's ISP resolver.
	WANDNS map[string]netip.Addr
	// DCDNS, when set, are the names a resolver on the dc host
	// (198.19.0.2:53) answers: the data centre's internal DNS, reachable
	// only through the tunnel.
	DCDNS map[string]netip.Addr
	// USBStick, when set, is a disk image plugged into the box as a USB
	// stick (see qemu.Config.USBStick and InsertStick).
	USBStick string
}

// Lab is a running test world.
type Lab struct {
	Site *edge.Site // Site.GW runs strongSwan and DHCP; Site.Host is dc
	Edge *edge.Edge
	LAN  *netns.NS // the LAN client host, 198.18.1.10
	VM   *qemu.VM
	// WANResolver and DCResolver run when Options.WANDNS and DCDNS ask
	// for them; nil otherwise.
	WANResolver, DCResolver *Resolver
	// vmConfig starts the VM again after a power cut.
	vmConfig qemu.Config
	dhcp     *exec.Cmd
	ntp      *net.UDPConn
	clock    clock
	// updates is the HTTPS update server (see Publish).
	updates *updateServer
	taps    []*os.File
	tmpDir  string
}

// Start builds the world and boots the appliance. On error everything
// already created is removed.
func Start(ctx context.Context, o Options) (_ *Lab, err error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	l := &Lab{}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.tmpDir, err = os.MkdirTemp("", "pqb-lab-"); err != nil {
		return nil, err
	}
	fmt.Fprintln(o.Progress, "lab: edge site (strongSwan 6.1) and dc host")
	if l.Site, err = edge.NewSite(ctx, edge.SiteConfig{}); err != nil {
		return nil, err
	}
	wan, err := qemu.Tap(l.Site.GW, tapWAN)
	if err != nil {
		return nil, err
	}
	l.taps = append(l.taps, wan)
	if _, err := l.Site.GW.Run(ctx, "ip", "addr", "add", edge.EdgeWANAddr+"/24", "dev", tapWAN); err != nil {
		return nil, err
	}
	if o.WANDNS != nil {
		if l.WANResolver, err = ServeDNS(l.Site.GW, net.JoinHostPort(edge.EdgeWANAddr, "53"), o.WANDNS); err != nil {
			return nil, err
		}
	}
	if o.DCDNS != nil {
		if l.DCResolver, err = ServeDNS(l.Site.Host, net.JoinHostPort(edge.DCAddr, "53"), o.DCDNS); err != nil {
			return nil, err
		}
	}
	if err := l.startDHCP(ctx); err != nil {
		return nil, err
	}
	if l.ntp, err = serveNTP(l.Site.GW, edge.EdgeWANAddr, &l.clock); err != nil {
		return nil, err
	}
	if err := l.startUpdateServer(o.LiveBundle); err != nil {
		return nil, err
	}
	l.Edge, err = edge.Start(ctx, edge.Options{
		NS: l.Site.GW, LocalAddrs: edge.EdgeWANAddr,
		LocalID: edgeID, RemoteID: branchID, Auth: edge.Auth{PSK: defaultPSK},
		Proposals: []string{DefaultIKE},
		Children: []edge.Child{{LocalTS: []string{edge.DCNet}, RemoteTS: []string{LANNet},
			ESPProposals: []string{defaultESP + "-x25519-ke1_mlkem768", defaultESP}}},
	})
	if err != nil {
		return nil, fmt.Errorf("lab: edge: %w", err)
	}

	if l.LAN, err = netns.New(ctx, "lan"); err != nil {
		return nil, err
	}
	lan, err := qemu.Tap(l.LAN, tapLAN)
	if err != nil {
		return nil, err
	}
	l.taps = append(l.taps, lan)
	for _, args := range [][]string{
		{"ip", "addr", "add", ClientAddr + "/24", "dev", tapLAN},
		{"ip", "route", "add", "default", "via", ApplianceLAN},
	} {
		if _, err := l.LAN.Run(ctx, args[0], args[1:]...); err != nil {
			return nil, err
		}
	}

	if o.BeforeBoot != nil {
		if err := o.BeforeBoot(l); err != nil {
			return nil, err
		}
	}
	if !o.Time.IsZero() {
		l.SetTime(o.Time)
	}
	fmt.Fprintln(o.Progress, "lab: booting the appliance")
	l.vmConfig = qemu.Config{Board: o.Board, Image: o.Image, NICs: l.taps, Console: o.Console, Stdin: o.Stdin, StateDir: o.StateDir, USBStick: o.USBStick}
	l.VM, err = qemu.Start(ctx, l.vmConfig)
	return l, err
}

// PowerCut kills QEMU at once, as pulling the plug would: nothing in the
// guest gets to sync or unmount.
func (l *Lab) PowerCut() error {
	if l.vmConfig.StateDir == "" {
		return errors.New("lab: power cut needs Options.StateDir, or the box's disk goes with the VM")
	}
	return l.VM.Stop()
}

// PowerOn starts the box again on the same disk and NVRAM.
func (l *Lab) PowerOn(ctx context.Context) error {
	vm, err := qemu.Start(ctx, l.vmConfig)
	if err != nil {
		return err
	}
	l.VM = vm
	return nil
}

// InsertStick plugs the disk image stick into the box for the next
// PowerOn, as someone would with the box switched off; "" pulls it out.
func (l *Lab) InsertStick(stick string) {
	l.vmConfig.USBStick = stick
}

// startDHCP serves the appliance's WAN from the edge namespace. dnsmasq
// does not ping an address before offering it (--no-ping): the WAN holds
// only the appliance, and the end-to-end test checks that every frame on
// it is IKE, ESP-in-UDP or the appliance's own link and control traffic.
func (l *Lab) startDHCP(ctx context.Context) error {
	args := []string{"--no-daemon", "--conf-file=/dev/null",
		"--interface=" + tapWAN, "--bind-interfaces", "--port=0", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=" + dhcpRange, "--dhcp-option=option:router," + edge.EdgeWANAddr,
		"--dhcp-leasefile=" + filepath.Join(l.tmpDir, "leases"), "--pid-file=" + filepath.Join(l.tmpDir, "dnsmasq.pid"),
		"--log-dhcp", "--log-facility=" + filepath.Join(l.tmpDir, "dnsmasq.log")}
	// dnsmasq itself serves no DNS (--port=0), so it hands out no
	// resolver unless told to.
	if l.WANResolver != nil {
		args = append(args, "--dhcp-option=option:dns-server,"+edge.EdgeWANAddr)
	}
	l.dhcp = l.Site.GW.Command(context.WithoutCancel(ctx), "dnsmasq", args...)
	if err := l.dhcp.Start(); err != nil {
		l.dhcp = nil
		return fmt.Errorf("lab: dnsmasq: %w (install it with: apt-get install -y dnsmasq)", err)
	}
	return nil
}

// DHCPLog returns dnsmasq's log.
func (l *Lab) DHCPLog() string {
	b, _ := os.ReadFile(filepath.Join(l.tmpDir, "dnsmasq.log"))
	return string(b)
}

// Close stops the VM, strongSwan and DHCP and removes every namespace.
func (l *Lab) Close() error {
	var errs []error
	if l.VM != nil {
		errs = append(errs, l.VM.Stop())
	}
	for _, t := range l.taps {
		t.Close()
	}
	if l.Edge != nil {
		errs = append(errs, l.Edge.Stop())
	}
	if l.ntp != nil {
		l.ntp.Close()
	}
	if l.updates != nil {
		l.updates.srv.Close()
	}
	for _, r := range []*Resolver{l.WANResolver, l.DCResolver} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	if l.dhcp != nil {
		l.dhcp.Process.Kill()
		done := make(chan struct{})
		go func() { l.dhcp.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("lab: dnsmasq did not exit"))
		}
	}
	if l.LAN != nil {
		errs = append(errs, l.LAN.Close())
	}
	if l.Site != nil {
		errs = append(errs, l.Site.Close())
	}
	if l.tmpDir != "" {
		os.RemoveAll(l.tmpDir)
	}
	return errors.Join(errs...)
}
