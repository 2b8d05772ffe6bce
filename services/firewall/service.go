package firewall

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/nftables"
)

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
