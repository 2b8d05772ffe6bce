package firewall

import (
	"context"
	"testing"
)

// TestPingFromLANOnly: the LAN may ping the appliance, the WAN may not.
func TestPingFromLANOnly(t *testing.T) {
	tp := newTopo(t)
	apply(t, tp.app, spec(80, false))
	ctx := context.Background()
	if out, err := tp.lan.Run(ctx, "ping", "-c1", "-W2", "198.18.1.1"); err != nil {
		t.Errorf("LAN host cannot ping the appliance: %v\n%s", err, out)
	}
	if out, err := tp.wan.Run(ctx, "ping", "-c1", "-W2", "192.0.2.2"); err == nil {
		t.Errorf("WAN router can ping the appliance:\n%s", out)
	}
}
