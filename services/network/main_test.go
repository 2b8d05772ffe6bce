package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

// Namespace tests run the network service and a DHCP server as children of
// the test binary inside namespaces (nstest.Start), so that every thread
// and socket of each is in the right namespace.
func TestMain(m *testing.M) {
	nstest.Main(m, map[string]func(context.Context) error{"network": childNetwork, "dhcpd": childDHCPServer})
}

func childNetwork(ctx context.Context) error {
	cfg, err := config.Load(os.Getenv("PQB_CONFIG"))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	return Run(ctx, cfg, Roles{WAN: "wan0", LAN: "lan0"}, Options{ResolvConf: os.Getenv("PQB_RESOLV"), Log: log})
}

// childDHCPServer serves 192.0.2.50/24 on wan0 with a one-minute lease to be
// renewed every two seconds, and prints each message type it receives, one
// a line, until ctx ends.
func childDHCPServer(ctx context.Context) error {
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
		return err
	}
	context.AfterFunc(ctx, func() { s.Close() })
	if err := s.Serve(); ctx.Err() == nil {
		return err
	}
	return nil
}
