package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/qemu/lab"
)

// run boots the built image in the lab: the edge with strongSwan, DHCP, a
// LAN client, and the appliance's console on this terminal. It returns when
// the VM stops (Ctrl-C in the console quits QEMU) or on SIGINT/SIGTERM, and
// always tears the lab down.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	boardName := fs.String("board", boards.Default, "board name or board file")
	out := fs.String("out", "out", "build output directory")
	fs.Parse(args)
	b, err := boards.Load(*boardName)
	if err != nil {
		return err
	}
	if b.QEMU == nil {
		return fmt.Errorf("board %s is real hardware; make run boots VM boards such as %s", b.Name, boards.Default)
	}
	img := filepath.Join(*out, b.Name, "disk.img")
	if _, err := os.Stat(img); err != nil {
		return fmt.Errorf("%v: build it first with make image BOARD=%s", err, b.Name)
	}
	var stdin *os.File
	if term.IsTerminal(int(os.Stdin.Fd())) {
		stdin = os.Stdin
	}
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "\r\n*** "+format+"\r\n", a...) }
	say("starting the edge (strongSwan 6.1, 192.0.2.1), DHCP, the LAN client (%s) and the appliance; Ctrl-C quits", lab.ClientAddr)
	bundle, err := filepath.Abs(filepath.Join(*out, b.Name, "update.pqb"))
	if err != nil {
		return err
	}
	say("the update server offers %s as %s: rebuild with make image, then type `update check` on the console", bundle, lab.UpdateURL("update.pqb"))
	l, err := lab.Start(ctx, lab.Options{Board: b, Image: img, Console: os.Stdout, Stdin: stdin, Progress: os.Stderr, LiveBundle: bundle})
	if err != nil {
		return err
	}
	defer func() {
		say("tearing down")
		if err := l.Close(); err != nil {
			say("teardown: %v", err)
		}
	}()
	go func() {
		start := time.Now()
		line, err := l.VM.WaitLine(ctx, regexp.MustCompile(`tunnel established`))
		if err != nil {
			return
		}
		sas, _ := l.Edge.ListSAs(ctx)
		say("tunnel up after %.0fs: %s", time.Since(start).Seconds(), strings.TrimSpace(line))
		if m := regexp.MustCompile(`\S*KE1_ML_KEM_\d+\S*`).FindString(sas); m != "" {
			say("the edge (strongSwan) reports %s", m)
		}
	}()
	select {
	case <-l.VM.Exited():
	case <-ctx.Done():
	}
	return nil
}
