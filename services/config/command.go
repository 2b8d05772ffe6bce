package config

import (
	"context"
	"fmt"
	"os"
)

// CheckMain is the `config-check` applet: it validates a config file (the
// appliance's by default) without applying it, so an edit can be checked
// before `reload`.
func CheckMain(ctx context.Context, args []string) error {
	path := DefaultPath
	if len(args) > 0 {
		path = args[0]
	}
	c, err := Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "%s: ok (hostname %s, wan %s)\n", path, c.Hostname, c.WAN.Mode)
	return nil
}
