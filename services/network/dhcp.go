package network

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// dhcpClient keeps a DHCPv4 lease on one interface: acquire, renew at T1,
// keep trying (broadcast, so rebinding to any server) until expiry, then
// start over; and start over whenever the link comes back up, since the
// WAN may now be a different network.
type dhcpClient struct {
	iface   string
	log     *slog.Logger
	bound   func(lease) error
	expired func(lease) error
}

const (
	exchangeTimeout = 3 * time.Second
	maxRetryWait    = time.Minute
)

func (d *dhcpClient) run(ctx context.Context, linkUp <-chan struct{}) error {
	wait := time.Second
	for {
		c, err := nclient4.New(d.iface, nclient4.WithTimeout(exchangeTimeout), nclient4.WithRetry(2))
		if err != nil {
			return fmt.Errorf("network: dhcp on %s: %w", d.iface, err)
		}
		err = d.session(ctx, c, linkUp)
		c.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err == errLinkUp {
			wait = time.Second
			continue
		}
		// No server answered, or the lease expired: try again later, or as
		// soon as the link comes back.
		d.log.Warn("dhcp: no lease", "if", d.iface, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-linkUp:
		case <-time.After(wait):
		}
		wait = min(wait*2, maxRetryWait)
	}
}

var errLinkUp = fmt.Errorf("link came up")

// session acquires a lease and keeps it until it expires, the link comes
// back up (errLinkUp) or ctx ends.
func (d *dhcpClient) session(ctx context.Context, c *nclient4.Client, linkUp <-chan struct{}) error {
	raw, err := c.Request(ctx)
	if err != nil {
		return err
	}
	l, err := parseLease(raw.ACK)
	if err != nil {
		return err
	}
	if err := d.bound(l); err != nil {
		return err
	}
	d.log.Info("dhcp: bound", "if", d.iface, "addr", l.Addr, "router", l.Router, "dns", l.DNS, "lease", l.Lease)
	obtained := time.Now()
	next := obtained.Add(l.T1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-linkUp:
			return errLinkUp
		case <-time.After(time.Until(next)):
		}
		if time.Since(obtained) >= l.Lease {
			if err := d.expired(l); err != nil {
				return err
			}
			return fmt.Errorf("lease for %v expired", l.Addr)
		}
		rctx, cancel := context.WithTimeout(ctx, exchangeTimeout*3)
		renewed, err := c.Renew(rctx, raw, dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask))
		cancel()
		if err == nil {
			nl, perr := parseLease(renewed.ACK)
			if perr == nil && nl.Addr == l.Addr {
				raw, l, obtained = renewed, nl, time.Now()
				if err := d.bound(l); err != nil {
					return err
				}
				d.log.Info("dhcp: renewed", "if", d.iface, "addr", l.Addr, "lease", l.Lease)
				next = obtained.Add(l.T1)
				continue
			}
			err = fmt.Errorf("renewal unusable: %v", perr)
			if perr == nil {
				// The server moved us: start over with a fresh lease.
				return fmt.Errorf("renewal changed the address from %v to %v", l.Addr, nl.Addr)
			}
		}
		// RFC 2131: retry at half the remaining time, at least a minute
		// apart, until the lease runs out.
		left := time.Until(obtained.Add(l.Lease))
		d.log.Warn("dhcp: renew failed", "if", d.iface, "err", err, "lease_left", left.Round(time.Second))
		next = time.Now().Add(min(max(left/2, 10*time.Second), left))
	}
}
