// Package ikecmd is the `ike` applet of the multi-call binary: it reads the
// appliance config and runs the tunnel (or, with -once, brings it up once
// and reports). It lives apart from package ike because the config package
// imports ike for its Tunnel section.
package ikecmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/ike"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// Main is the applet entry point.
func Main(ctx context.Context, args []string) error {
	return run(ctx, args, os.Stdout, os.Stderr, nil)
}

// run is Main with its outputs and (for tests) option overrides injectable.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tweak func(*ike.Options)) error {
	fs := flag.NewFlagSet("ike", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/pqbranch/config.json", "appliance configuration `file`")
	once := fs.Bool("once", false, "exit 0 once the IKE SA and first Child SA are up, printing one JSON status line")
	noInstall := fs.Bool("no-install", false, "negotiate and derive ESP keys, but leave the kernel alone")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.Tunnel == nil {
		return fmt.Errorf("%s: no tunnel section", *path)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	opt := ike.Options{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	if *noInstall {
		opt.Installer = xfrm.NewMemory()
	} else {
		opt.Installer, opt.LocalPort, opt.LocalNATPort, opt.ESPInUDP = xfrm.Netlink{}, 500, 4500, true
	}
	if *once {
		opt.RetransmitTries = 4 // fail within ~15 s rather than a minute
	}
	if tweak != nil {
		tweak(&opt)
	}
	s, err := ike.New(cfg.Tunnel, opt)
	if err != nil {
		return err
	}
	if !*once {
		return s.Run(ctx)
	}
	if err := s.Establish(ctx); err != nil {
		return errors.Join(fmt.Errorf("tunnel not established: %w", err), s.Close())
	}
	line, err := json.Marshal(s.Status())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", line)
	return s.Close()
}
