package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ensureDebootstrap installs debootstrap with apt when the host lacks it.
func ensureDebootstrap(ctx context.Context, progress io.Writer) error {
	if _, err := exec.LookPath("debootstrap"); err == nil {
		return nil
	}
	fmt.Fprintln(progress, "edge: debootstrap missing, installing it with apt-get")
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "debootstrap")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err == nil {
		return nil
	}
	// A fresh machine has no package lists yet.
	if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
		return fmt.Errorf("edge: apt-get update: %w: %s", err, tail(string(out), 10))
	}
	if out, err := install(); err != nil {
		return fmt.Errorf("edge: apt-get install debootstrap: %w: %s", err, tail(string(out), 10))
	}
	return nil
}

// perPackage maps debootstrap's one-line-per-package verbs to phases. Printing
// each line would flood a test log with ~600 lines, so only the first line of
// a phase is shown and a ticker reports progress in between.
var perPackage = map[string]string{
	"Retrieving": "download", "Validating": "download",
	"Extracting": "extract",
	"Unpacking":  "install", "Configuring": "install",
}

// runDebootstrap builds the root into dir, reporting progress lines. On
// failure the error carries the tail of debootstrap's output.
func runDebootstrap(ctx context.Context, s distroSpec, dir, mirror string, progress io.Writer) error {
	args := []string{"--variant=minbase", "--include=" + strings.Join(s.packages, ","), s.suite, dir, mirror}
	if s.script != "" {
		args = append(args, s.script)
	}
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	// debootstrap forks chroot, dpkg and maintainer scripts; kill them all on
	// cancel, not only the shell script at the top.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw

	var (
		mu    sync.Mutex
		last  string
		lines []string
	)
	start := time.Now()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		phase := ""
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			last = line
			lines = append(lines, line)
			mu.Unlock()
			p := linePhase(line)
			if p == "" || p != phase {
				fmt.Fprintf(progress, "edge: debootstrap %s: %s\n", s.suite, line)
			}
			phase = p
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	stopTick := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopTick:
				return
			case <-tick.C:
				mu.Lock()
				fmt.Fprintf(progress, "edge: debootstrap %s: %s elapsed, %d lines, last: %s\n",
					s.suite, time.Since(start).Round(time.Second), len(lines), last)
				mu.Unlock()
			}
		}
	}()

	fmt.Fprintf(progress, "edge: debootstrap %s into %s (%d packages included)\n", s.suite, dir, len(s.packages))
	err := cmd.Run()
	pw.Close()
	<-scanned
	close(stopTick)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("edge: debootstrap %s: %w\n%s", strings.Join(args, " "), err, tail(strings.Join(lines, "\n"), 25))
	}
	fmt.Fprintf(progress, "edge: debootstrap %s done in %s\n", s.suite, time.Since(start).Round(time.Second))
	return nil
}

func linePhase(line string) string {
	rest, ok := strings.CutPrefix(line, "I: ")
	if !ok {
		return ""
	}
	verb, _, _ := strings.Cut(rest, " ")
	return perPackage[verb]
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
