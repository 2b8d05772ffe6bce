package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// Namespace tests run the network service and a DHCP server as children of
// the test binary inside namespaces (`ip netns exec`), so that every thread
// and socket of each is in the right namespace.
const roleEnv = "PQB_NETWORK_TEST_ROLE"

func TestMain(m *testing.M) {
	nstest.LockMainThread()
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "network":
		os.Exit(childNetwork())
	case "dhcpd":
		os.Exit(childDHCPServer())
	}
	os.Exit(2)
}

func childNetwork() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.Getenv("PQB_CONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err = Run(ctx, cfg, Roles{WAN: "wan0", LAN: "lan0"}, Options{ResolvConf: os.Getenv("PQB_RESOLV"), Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childDHCPServer serves 192.0.2.50/24 on wan0 with a one-minute lease to be
// renewed every two seconds, and prints each message type it receives.
func childDHCPServer() int {
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var reply dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			reply = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			reply = dhcpv4.MessageTypeAck
		default:
			return
		}
		fmt.Println(m.MessageType())
		server := net.IPv4(192, 0, 2, 1)
		resp, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(reply),
			dhcpv4.WithYourIP(net.IPv4(192, 0, 2, 50)),
			dhcpv4.WithServerIP(server),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(server),
			dhcpv4.WithDNS(net.IPv4(192, 0, 2, 53)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Minute)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(2*time.Second)),
		)
		if err != nil {
			return
		}
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if !m.ClientIPAddr.IsUnspecified() {
			dst.IP = m.ClientIPAddr
		}
		conn.WriteTo(resp.ToBytes(), dst)
	}
	s, err := server4.NewServer("wan0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
