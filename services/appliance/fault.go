package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/supervise"
)

// FaultSocket is where dev images listen for the `crash` applet. Production
// images never open it (Options.FaultSocket stays empty): crashing services
// on request exists only to prove, on the real image, that supervision
// restarts a failed service and leaves the others alone.
const FaultSocket = "/run/pqbranch/fault.sock"

// crashable wraps svc so that a value on crash makes it fail the way a bug
// would: its work stops, then it panics in the goroutine the supervisor runs
// it in, so the supervisor's own panic recovery and restart are what get
// exercised. The wrapped work is stopped first so that, say, the status
// listener's port is free for the restart.
func crashable(svc supervise.Service, crash <-chan struct{}) supervise.Service {
	run := svc.Run
	svc.Run = func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- run(ctx) }()
		select {
		case err := <-done:
			return err
		case <-crash:
			cancel()
			<-done
			panic("crash injected through " + FaultSocket)
		}
	}
	return svc
}

// withFaults wraps every service and returns the channels that crash them.
func withFaults(svcs []supervise.Service) ([]supervise.Service, map[string]chan struct{}) {
	crash := make(map[string]chan struct{}, len(svcs))
	out := make([]supervise.Service, len(svcs))
	for i, s := range svcs {
		ch := make(chan struct{}, 1)
		crash[s.Name] = ch
		out[i] = crashable(s, ch)
	}
	return out, crash
}

// serveFaults accepts one service name per connection on the unix socket at
// path and crashes that service, until ctx ends.
func serveFaults(ctx context.Context, log *slog.Logger, path string, crash map[string]chan struct{}) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("fault socket: %w", err)
	}
	_ = os.Remove(path) // a stale socket from a previous run
	ln, err := (&net.ListenConfig{}).Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("fault socket: %w", err)
	}
	defer ln.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("fault socket: %w", err)
	}
	log.Warn("fault injection enabled (dev image)", "socket", path)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fault socket: %w", err)
		}
		handleFault(log, conn, crash)
	}
}

func handleFault(log *slog.Logger, conn net.Conn, crash map[string]chan struct{}) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	name := strings.TrimSpace(line)
	ch, ok := crash[name]
	if !ok {
		fmt.Fprintf(conn, "error: no service %q\n", name)
		return
	}
	log.Warn("crashing a service on request", "service", name)
	select {
	case ch <- struct{}{}:
	default: // a crash is already pending
	}
	fmt.Fprintf(conn, "ok\n")
}

// CrashMain is the `crash <service>` applet of dev images: it makes the named
// service fail, for supervision tests on the real appliance.
func CrashMain(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: crash <service>")
	}
	reply, err := askFault(ctx, FaultSocket, args[0])
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("crash: %w (fault injection exists only in dev images)", err)
	}
	if err != nil {
		return fmt.Errorf("crash: %w", err)
	}
	if reply != "ok" {
		return fmt.Errorf("crash: %s", reply)
	}
	fmt.Printf("crash: %s crashed\n", args[0])
	return nil
}

// askFault sends one service name to the fault socket and returns the reply.
func askFault(ctx context.Context, path, name string) (string, error) {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", path, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\n", name); err != nil {
		return "", err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("no reply: %w", err)
	}
	return strings.TrimSpace(reply), nil
}

// rejectConfigProblem is the field error a dev test image built with
// release.FaultRejectConfig adds to every validation of the installed config.
const rejectConfigProblem = "fault injected: this firmware refuses the installed config"

// configChecks are the checks the running release adds to the config
// validator's. With release.FaultRejectConfig the installed config is
// refused on the real load path, as by a release whose validator no longer
// accepts the site's config: the file's error shows in status, the board
// default runs (it ships with the firmware, so it passes), and the update
// trial is not healthy because the site config is not in force.
func configChecks(rel release.Release) []config.Check {
	if rel.Fault != release.FaultRejectConfig {
		return nil
	}
	return []config.Check{func(*config.Config) []config.FieldError {
		return []config.FieldError{{Field: "hostname", Problem: rejectConfigProblem}}
	}}
}
