// Command pqbranch is the appliance's one multi-call binary: the initramfs
// links every appliance command (init, status, ike, ...) to it, and it runs
// the applet named by argv[0] or, failing that, by its first argument. One
// binary keeps rebuilds to a single cached `go build`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/pqbranch/pqbranch/services/appliance"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/ike/ikecmd"
	"github.com/pqbranch/pqbranch/services/initd"
	"github.com/pqbranch/pqbranch/services/power"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/update/updatecmd"
)

// applet is the entry point of one appliance command.
type applet func(ctx context.Context, args []string) error

func applets() map[string]applet {
	return map[string]applet{
		"ike":          ikecmd.Main,
		"init":         initd.Main,
		"status":       status.Main,
		"reload":       appliance.ReloadMain,
		"config-check": config.CheckMain,
		"reboot":       power.Applet(power.Reboot),
		"poweroff":     power.Applet(power.Poweroff),
		"crash":        appliance.CrashMain, // dev images only: the socket exists there
		"update":       updatecmd.Main,
	}
}

func main() {
	all := applets()
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := all[name]; !ok && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	if name == "applets" {
		// The image build links each applet name to this binary.
		fmt.Println(strings.Join(names, "\n"))
		return
	}
	run, ok := all[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "pqbranch: unknown command %q; known: %v\n", name, names)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
