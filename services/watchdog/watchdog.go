// Package watchdog pets the hardware watchdog while supervision is healthy.
// When the supervisor hangs or a critical service stays down, petting stops
// and the hardware resets the machine, which on a freshly updated slot hands
// the decision to A/B fallback.
package watchdog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/u-root/u-root/pkg/watchdog"
)

// Device is an open watchdog.
type Device interface {
	KeepAlive() error
}

// Open opens the watchdog device (normally /dev/watchdog); opening arms it.
func Open(path string) (Device, error) {
	d, err := watchdog.Open(path)
	if err != nil {
		return nil, fmt.Errorf("watchdog: open %s: %w", path, err)
	}
	return d, nil
}

// Pet keeps the watchdog from firing while healthy() holds, checking every
// interval, until ctx ends. It deliberately never disarms the device (no
// magic close): during a shutdown the watchdog still resets a machine whose
// shutdown hangs.
func Pet(ctx context.Context, log *slog.Logger, dev Device, healthy func() bool, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	petting := true
	for {
		ok := healthy()
		switch {
		case ok:
			if err := dev.KeepAlive(); err != nil {
				log.Error("watchdog: keepalive", "err", err)
			}
			if !petting {
				log.Info("watchdog: supervision healthy again, petting")
			}
		case petting:
			log.Error("watchdog: supervision unhealthy, no longer petting; the watchdog will reset the machine")
		}
		petting = ok
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
