package appliance

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// ReloadMain is the `reload` applet: it asks init to load the config file
// again. A bad file is reported on the console and the status page, and the
// config in force stays.
func ReloadMain(ctx context.Context, args []string) error {
	if err := unix.Kill(1, unix.SIGHUP); err != nil {
		return fmt.Errorf("reload: signal init: %w", err)
	}
	return nil
}
