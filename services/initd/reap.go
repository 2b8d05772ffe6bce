package initd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reap collects the orphans that the kernel re-parents to PID 1 until ctx
// ends. It must never collect a child that this process started itself: that
// child's exit status belongs to whoever waits for it (os/exec in the console
// shell, or any service running a command), and a blind wait4(-1) would steal
// it and make their Wait fail. So it peeks at an exited child without reaping
// it, and reaps only the ones no os.Process in this process holds.
func reap(ctx context.Context) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	// The tick covers an owned child blocking the peek: its owner reaps it
	// within moments, and the orphans behind it come next.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := reapOrphans(); err != nil {
			fmt.Fprintf(os.Stderr, "init: reaper: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-sigc:
		case <-tick.C:
		}
	}
}

// reapOrphans reaps exited children that nobody else will wait for, stopping
// at the first one that an os.Process of ours owns.
func reapOrphans() error {
	for {
		pid, err := peekExited()
		if err != nil || pid == 0 {
			return err
		}
		owned, err := ownedChildren()
		if err != nil {
			return err
		}
		if owned[pid] {
			return nil
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil && !errors.Is(err, unix.ECHILD) {
			return fmt.Errorf("wait4 %d: %w", pid, err)
		}
	}
}

// siginfoChild is the SIGCHLD layout of siginfo_t; x/sys/unix hides the
// union that holds the pid.
type siginfoChild struct {
	Signo, Errno, Code, _ int32
	Pid                   int32
	UID                   uint32
	Status                int32
	_                     [100]byte
}

// peekExited returns the pid of an exited child, leaving it waitable (the
// kernel keeps it a zombie), or 0 when no child has exited.
func peekExited() (int, error) {
	var info siginfoChild
	for {
		_, _, errno := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, 0, 0)
		switch errno {
		case 0:
			return int(info.Pid), nil
		case unix.EINTR:
			continue
		case unix.ECHILD:
			return 0, nil
		}
		return 0, fmt.Errorf("waitid: %w", errno)
	}
}
