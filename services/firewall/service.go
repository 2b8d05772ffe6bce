package firewall

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/nftables"
)

// ipForwardSysctl is the network namespace's IPv4 forwarding switch.
const ipForwardSysctl = "/proc/sys/net/ipv4/ip_forward"

// Run applies the ruleset for s and keeps it in force until ctx ends,
// re-checking it every interval and repairing it if something changed it.
// On return the ruleset stays: the appliance fails closed, and the next
// Apply replaces it atomically.
func Run(ctx context.Context, log *slog.Logger, s Spec, interval time.Duration) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: netlink: %w", err)
	}
	if err := Apply(conn, s); err != nil {
		return err
	}
	// Routing between LAN and WAN (tunnel or breakout) needs forwarding,
	// which the kernel starts with off. It goes on only here, with the
	// ruleset in force, so nothing is ever forwarded unfiltered.
	if err := os.WriteFile(ipForwardSysctl, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("firewall: enable IPv4 forwarding: %w", err)
	}
	log.Info("firewall applied", "wan", s.WAN, "lan", s.LAN, "breakout", s.InternetBreakout, "remote_subnets", s.RemoteSubnets)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := verify(conn, s.table(), build(s)); err != nil {
			log.Error("firewall ruleset changed behind our back, re-applying", "err", err)
			if err := Apply(conn, s); err != nil {
				return err
			}
		}
	}
}
