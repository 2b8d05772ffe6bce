// Command pqb-edge builds the strongSwan edge roots, or runs one edge in an
// existing network namespace until interrupted; `make run` uses it.
//
//	pqb-edge -build                      # build/refresh both cached roots
//	pqb-edge -ns pqb-edgegw-1a2b3c -psk secret -local-ts 198.19.0.0/24 -remote-ts 198.18.1.0/24
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/qemu/netns"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pqb-edge:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		build     = flag.Bool("build", false, "build the cached roots and exit")
		nsName    = flag.String("ns", "", "existing network namespace to run charon in")
		distro    = flag.String("distro", string(edge.Forky), "root: forky (strongSwan 6.1) or bookworm (5.9)")
		local     = flag.String("local", edge.EdgeWANAddr, "local_addrs")
		remote    = flag.String("remote", "%any", "remote_addrs")
		localID   = flag.String("local-id", "", "local IKE identity (default: local address)")
		remoteID  = flag.String("remote-id", "", "remote IKE identity (default: %any)")
		psk       = flag.String("psk", "", "pre-shared key")
		proposals = flag.String("proposals", "", "IKE proposals, comma separated (default: distro's)")
		esp       = flag.String("esp", "aes256gcm16", "ESP proposals, comma separated")
		localTS   = flag.String("local-ts", edge.DCNet, "local traffic selectors, comma separated")
		remoteTS  = flag.String("remote-ts", "198.18.0.0/16", "remote traffic selectors, comma separated")
		initiate  = flag.Bool("initiate", false, "initiate the child after start")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cache, err := edge.NewCache(os.Stderr)
	if err != nil {
		return err
	}
	if *build {
		for _, d := range []edge.Distro{edge.Forky, edge.Bookworm} {
			start := time.Now()
			root, err := cache.Root(ctx, d)
			if err != nil {
				return err
			}
			fmt.Printf("%s: %s (%s)\n", d, root, time.Since(start).Round(time.Second))
		}
		return nil
	}
	if *nsName == "" || *psk == "" {
		return fmt.Errorf("need -ns and -psk (or -build)")
	}
	opts := edge.Options{
		NS: &netns.NS{Name: *nsName}, Distro: edge.Distro(*distro), Cache: cache,
		LocalAddrs: *local, RemoteAddrs: *remote, LocalID: *localID, RemoteID: *remoteID,
		Auth: edge.Auth{PSK: *psk},
		Children: []edge.Child{{
			LocalTS: split(*localTS), RemoteTS: split(*remoteTS), ESPProposals: split(*esp),
		}},
	}
	if *proposals != "" {
		opts.Proposals = split(*proposals)
	}
	e, err := edge.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pqb-edge: stop:", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "pqb-edge: charon pid %d in %s, root %s; Ctrl-C stops it\n", e.PID(), *nsName, e.Root())
	if *initiate {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := e.Initiate(ictx, "net")
		cancel()
		if err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
