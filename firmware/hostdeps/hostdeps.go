// Package hostdeps makes sure the build host has the system packages that
// building, running and testing need, installing them with apt when it can
// and otherwise naming the exact command to run.
package hostdeps

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// need is one requirement: present when any of its files exists.
type need struct {
	pkg   string
	files []string
}

// Sets of requirements by job.
var (
	imageNeeds = []need{
		{"qemu-utils", []string{"/usr/bin/qemu-img"}},
		{"dpkg", []string{"/usr/bin/dpkg-deb"}},
		{"git", []string{"/usr/bin/git"}},
	}
	runNeeds = append(imageNeeds,
		need{"qemu-system-x86", []string{"/usr/bin/qemu-system-x86_64"}},
		need{"ovmf", []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd"}},
		need{"iproute2", []string{"/usr/sbin/ip", "/sbin/ip", "/bin/ip"}},
		need{"debootstrap", []string{"/usr/sbin/debootstrap"}},
		need{"dnsmasq", []string{"/usr/sbin/dnsmasq"}},
		need{"procps", []string{"/usr/sbin/sysctl", "/sbin/sysctl"}},
	)
	testNeeds = append(runNeeds,
		need{"nftables", []string{"/usr/sbin/nft"}},
		need{"iputils-ping", []string{"/usr/bin/ping", "/bin/ping"}},
		need{"tshark", []string{"/usr/bin/tshark"}},
		need{"iperf3", []string{"/usr/bin/iperf3"}},
		need{"e2fsprogs", []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}},
		need{"mount", []string{"/usr/sbin/losetup", "/sbin/losetup"}},
		// The fleet's report store is tested against a real server.
		need{"postgresql", []string{"/usr/lib/postgresql/15/bin/initdb", "/usr/lib/postgresql/16/bin/initdb", "/usr/lib/postgresql/17/bin/initdb"}},
	)
)

// For returns the requirements of a job: "image", "run" or "test".
func For(job string) ([]need, error) {
	switch job {
	case "image":
		return imageNeeds, nil
	case "run":
		return runNeeds, nil
	case "test":
		return testNeeds, nil
	}
	return nil, fmt.Errorf("hostdeps: unknown job %q; expected image, run or test", job)
}

// Missing lists the Debian packages of needs that are not installed.
func Missing(needs []need) []string {
	seen := map[string]bool{}
	for _, n := range needs {
		found := false
		for _, f := range n.files {
			if _, err := os.Stat(f); err == nil {
				found = true
				break
			}
		}
		if !found {
			seen[n.pkg] = true
		}
	}
	var pkgs []string
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs
}

// Ensure installs what job needs. It returns an error naming the command
// to run when it cannot install (not root, no apt).
func Ensure(ctx context.Context, job string, progress io.Writer) error {
	needs, err := For(job)
	if err != nil {
		return err
	}
	missing := Missing(needs)
	if len(missing) == 0 {
		return nil
	}
	cmdline := "apt-get install -y --no-install-recommends " + strings.Join(missing, " ")
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		return fmt.Errorf("missing system packages: %s\nrun: sudo apt-get update && sudo %s", strings.Join(missing, " "), cmdline)
	}
	fmt.Fprintf(progress, "installing %s\n", strings.Join(missing, " "))
	for _, args := range [][]string{{"update", "-q"}, append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = progress, progress
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w\nrun: sudo apt-get update && sudo %s", args[0], err, cmdline)
		}
	}
	if still := Missing(needs); len(still) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(still, " "))
	}
	return nil
}
