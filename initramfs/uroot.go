package initramfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// DebugCommands is the small set of u-root commands that dev images carry for
// debugging on the console. prod images carry none: no shell, nothing to run.
var DebugCommands = []string{
	"gosh", "ls", "cat", "cp", "mv", "rm", "ln", "mkdir", "echo", "grep", "more",
	"ip", "ping", "netstat", "dmesg", "ps", "kill", "mount", "umount", "df", "free",
	"uname", "hexdump", "sync", "date", "wget", "find", "dd",
}

// CoreCommands is u-root's own `core` set, built only for `make bench` to
// compare sizes against.
var CoreCommands = []string{"github.com/u-root/u-root/cmds/core/*"}

// URootArchive returns the path of a cpio archive holding u-root's commands
// in busybox mode, built with mkuimage from the module in modDir (its go.mod
// picks the versions of u-root and of everything the commands import).
// u-root's busybox build recompiles all of its packages every time, so the
// archive is cached by everything that determines its bytes: the Go
// version, the module's go.mod and go.sum (a dependency's new version, such
// as the shell's line editor's, is a new archive) and the command list.
// Rebuilding the appliance never pays for it again.
// gobusybox runs go with the process's environment and no GOCACHE of its
// own; as it builds with -a, a Go build cache is written but never read.
func URootArchive(cacheDir, modDir string, cmds []string, progress io.Writer) (string, error) {
	pkgs := make([]string, len(cmds))
	for i, c := range cmds {
		pkgs[i] = c
		if !strings.Contains(c, "/") {
			pkgs[i] = "github.com/u-root/u-root/cmds/core/" + c
		}
	}
	key := sha256.New()
	// The same in pqbuild and in a test binary that builds images, so
	// both find the one archive.
	fmt.Fprintln(key, runtime.Version())
	fmt.Fprintln(key, strings.Join(pkgs, " "))
	// go.mod picks the versions (go.sum keeps old lines after a downgrade
	// or a replace); go.sum pins their contents.
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(modDir, f))
		if err != nil {
			return "", fmt.Errorf("u-root busybox build: the module's versions: %w", err)
		}
		fmt.Fprintf(key, "%s %d\n", f, len(b))
		key.Write(b)
	}
	out := filepath.Join(cacheDir, "uroot", hex.EncodeToString(key.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(out), "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmpDir)
	fmt.Fprintf(progress, "building %d u-root commands in busybox mode (once per u-root version)\n", len(pkgs))
	tmp := filepath.Join(tmpDir, "uroot.cpio")
	l := llog.New(slog.LevelWarn, func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) })
	err = uimage.Create(l,
		uimage.WithReplaceEnv(golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"), golang.WithWorkingDir(modDir))),
		uimage.WithBusyboxBuildOpts(&golang.BuildOpts{NoStrip: false, ExtraArgs: []string{"-trimpath", "-buildvcs=false"}}),
		uimage.WithBusyboxCommands(pkgs...),
		uimage.WithBaseArchive(cpio.InMemArchive()),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmpDir),
		uimage.WithCPIOOutput(tmp),
	)
	if err != nil {
		return "", fmt.Errorf("u-root busybox build: %w", err)
	}
	return out, os.Rename(tmp, out)
}
