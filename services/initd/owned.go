package initd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ownedChildren returns the pids of the children that an os.Process in this
// process will wait for. Since Go 1.23 on Linux ≥ 5.4, os.StartProcess (and
// so os/exec) creates every child with a pidfd that it holds until Wait has
// reaped the child, and the kernel installs that pidfd before the child can
// run: whatever is started in-process, by init or by any service, shows up
// here for its whole life, with no registry that a new caller could forget.
func ownedChildren() (map[int]bool, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("list own fds: %w", err)
	}
	owned := map[int]bool{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		// "anon_inode:[pidfd]" before Linux 6.9, "pidfd:[n]" on pidfs after.
		if err != nil || !strings.Contains(target, "pidfd") {
			continue // closed meanwhile, or not a pidfd
		}
		if pid, ok := pidfdPid("/proc/self/fdinfo/" + e.Name()); ok {
			owned[pid] = true
		}
	}
	return owned, nil
}

// pidfdPid reads the "Pid:" line of a pidfd's fdinfo.
func pidfdPid(fdinfo string) (int, bool) {
	b, err := os.ReadFile(fdinfo)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pid:"); ok {
			pid, err := strconv.Atoi(strings.TrimSpace(v))
			return pid, err == nil && pid > 0
		}
	}
	return 0, false
}
