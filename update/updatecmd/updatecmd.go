// Package updatecmd is `pqbranch update`, a thin client of the update
// agent's control socket: status, check, install FILE, apply-now, cancel.
package updatecmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pqbranch/pqbranch/update/agent"
)

// DefaultSocket is where the appliance runs the agent's control socket.
const DefaultSocket = "/run/pqbranch/update.sock"

const usage = `usage: pqbranch update [-json] [-socket PATH] status|check|install FILE|apply-now|cancel

  status      show the update state, progress, maintenance window and last result
  check       check update.url now (retries a bundle rejected before)
  install F   verify and stage the bundle file F into the inactive slot
  apply-now   reboot into the staged update now, without waiting for the window
  cancel      drop a staged or downloading update`

// Main is the `update` applet.
func Main(ctx context.Context, args []string) error {
	return run(ctx, args, os.Stdout, os.Stderr)
}

// poll is how often install and check follow the download's progress.
const poll = 500 * time.Millisecond

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("update", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage) }
	asJSON := fs.Bool("json", false, "print the agent's status as JSON")
	socket := fs.String("socket", DefaultSocket, "the update agent's control socket")
	wait := fs.Bool("wait", true, "install and check: follow the download until it is staged or fails")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("update: missing command")
	}
	cmd, rest := agent.Command(fs.Arg(0)), fs.Args()[1:]
	req := agent.Request{Cmd: cmd}
	switch cmd {
	case agent.CmdStatus, agent.CmdCheck, agent.CmdApplyNow, agent.CmdCancel:
		if len(rest) != 0 {
			return fmt.Errorf("update %s: unexpected argument %q", cmd, rest[0])
		}
	case agent.CmdInstall:
		if len(rest) != 1 {
			return errors.New("update install: expected one bundle FILE")
		}
		// The agent opens the file: hand it a path that does not depend on our directory.
		abs, err := filepath.Abs(rest[0])
		if err != nil {
			return fmt.Errorf("update install: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("update install: %w", err)
		}
		req.Path = abs
	default:
		fs.Usage()
		return fmt.Errorf("update: command %q: unknown", cmd)
	}

	resp, err := call(ctx, *socket, req)
	if err != nil {
		if resp != nil && resp.Status != nil && !*asJSON {
			printStatus(stdout, *resp.Status)
		}
		return err
	}
	st := *resp.Status
	if (cmd == agent.CmdInstall || cmd == agent.CmdCheck) && *wait {
		if st, err = follow(ctx, *socket, st, stdout, !*asJSON); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	if st.State == agent.Failed {
		return fmt.Errorf("update %s: %s", cmd, st.Reason)
	}
	return nil
}

func call(ctx context.Context, socket string, req agent.Request) (*agent.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute) // install waits for the header verdict
	defer cancel()
	return agent.Call(ctx, socket, req)
}

// follow polls the status while the agent downloads and verifies, printing
// one progress line per poll when show is set, until the state settles.
func follow(ctx context.Context, socket string, st agent.Status, w io.Writer, show bool) (agent.Status, error) {
	for st.State == agent.Checking || st.State == agent.Downloading || st.State == agent.Verifying {
		if show {
			fmt.Fprintf(w, "%s %s: %s\n", st.State, st.Target, progress(st))
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(poll):
		}
		resp, err := call(ctx, socket, agent.Request{Cmd: agent.CmdStatus})
		if err != nil {
			return st, err
		}
		st = *resp.Status
	}
	return st, nil
}

func progress(st agent.Status) string {
	return fmt.Sprintf("%s of %s (%.1f%%) at %s/s", mib(st.Bytes), mib(st.Total), st.Percent, mib(int64(st.Rate)))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// printStatus renders a status for a person at a console.
func printStatus(w io.Writer, st agent.Status) {
	fmt.Fprintf(w, "update: %s\n", st.State)
	fmt.Fprintf(w, "  running   %s (slot %s)\n", st.Version, st.Slot)
	if st.Target != "" {
		fmt.Fprintf(w, "  target    %s\n", st.Target)
	}
	if st.Source != "" {
		fmt.Fprintf(w, "  source    %s\n", st.Source)
	}
	if st.Total > 0 && st.State != agent.Committed && st.State != agent.RolledBack {
		fmt.Fprintf(w, "  progress  %s\n", progress(st))
	}
	if st.State == agent.Staged {
		if st.WaitUntil.IsZero() {
			fmt.Fprintf(w, "  waiting   for apply-now\n")
		} else {
			fmt.Fprintf(w, "  waiting   until %s\n", st.WaitUntil.Format(time.RFC3339))
		}
	}
	if st.Reason != "" {
		fmt.Fprintf(w, "  reason    %s\n", st.Reason)
	}
	if st.Channel != "" {
		fmt.Fprintf(w, "  channel   %s\n", st.Channel)
	}
	fmt.Fprintf(w, "  window    %s\n", st.Window)
	fmt.Fprintf(w, "  floor     security version %d\n", st.SecurityFloor)
	if l := st.Last; l != nil {
		fmt.Fprintf(w, "  last      %s %s -> %s at %s", l.Result, l.From, l.To, l.At.Format(time.RFC3339))
		if l.Reason != "" {
			fmt.Fprintf(w, ": %s", l.Reason)
		}
		fmt.Fprintln(w)
	}
}
