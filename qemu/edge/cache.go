package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// completeMarker is written into a root as the last step before the rename,
// so a directory without it is never mistaken for a usable root.
const completeMarker = ".pqb-edge-complete"

// Cache holds the debootstrapped roots, shared by every test process on the
// machine and kept between runs.
type Cache struct {
	// Dir holds one directory per root plus the build lock.
	Dir string
	// Mirror is the Debian mirror; empty means DefaultMirror.
	Mirror string
	// Progress receives a line now and then while a root is built; nil
	// discards them.
	Progress io.Writer
}

// DefaultCacheDir is $PQB_CACHE/edge, or ~/.cache/pqbranch/edge.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("PQB_CACHE"); d != "" {
		return filepath.Join(d, "edge"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("edge: no cache dir: set PQB_CACHE: %w", err)
	}
	return filepath.Join(home, ".cache", "pqbranch", "edge"), nil
}

// NewCache returns the default cache, printing build progress to progress.
func NewCache(progress io.Writer) (*Cache, error) {
	dir, err := DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	return &Cache{Dir: dir, Progress: progress}, nil
}

func (c *Cache) mirror() string {
	if c.Mirror != "" {
		return c.Mirror
	}
	return DefaultMirror
}

func (c *Cache) progress() io.Writer {
	if c.Progress != nil {
		return c.Progress
	}
	return io.Discard
}

// Root returns the path of a complete root for d, building it first when the
// cache lacks it. Concurrent callers, in this or other processes, wait for
// one build rather than running two.
func (c *Cache) Root(ctx context.Context, d Distro) (string, error) {
	s, err := d.spec()
	if err != nil {
		return "", err
	}
	final := filepath.Join(c.Dir, s.dirName(c.mirror()))
	if complete(final) {
		return final, nil
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", fmt.Errorf("edge: cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(c.Dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete(final) { // another process built it while we waited
		return final, nil
	}
	if err := c.removeStale(ctx, final); err != nil {
		return "", err
	}
	if err := ensureDebootstrap(ctx, c.progress()); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(c.Dir, filepath.Base(final)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("edge: build dir: %w", err)
	}
	if err := c.build(ctx, s, tmp); err != nil {
		if rmErr := removeTree(context.Background(), tmp); rmErr != nil {
			err = fmt.Errorf("%w (and cleanup: %v)", err, rmErr)
		}
		return "", err
	}
	// MkdirTemp made it 0700; as the chroot's / it must be world-readable.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = removeTree(context.Background(), tmp)
		return "", fmt.Errorf("edge: chmod root: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = removeTree(context.Background(), tmp)
		return "", fmt.Errorf("edge: commit root: %w", err)
	}
	return final, nil
}

func complete(root string) bool {
	_, err := os.Stat(filepath.Join(root, completeMarker))
	return err == nil
}

// removeStale deletes half-built roots left by killed builds, and a final
// directory without its marker. Only called under the lock, so nothing is
// building them.
func (c *Cache) removeStale(ctx context.Context, final string) error {
	stale, err := filepath.Glob(filepath.Join(c.Dir, "*.tmp-*"))
	if err != nil {
		return err
	}
	if _, err := os.Lstat(final); err == nil {
		stale = append(stale, final)
	}
	for _, dir := range stale {
		fmt.Fprintf(c.progress(), "edge: removing incomplete root %s\n", dir)
		if err := removeTree(ctx, dir); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cache) build(ctx context.Context, s distroSpec, dir string) error {
	if err := runDebootstrap(ctx, s, dir, c.mirror(), c.progress()); err != nil {
		return err
	}
	// debootstrap unmounts /proc and /sys itself, unless it died half-way.
	if err := unmountAll(dir); err != nil {
		return err
	}
	if err := verifyRoot(ctx, s, dir); err != nil {
		return err
	}
	// The downloaded .debs are a fifth of the root and never read again.
	debs, _ := filepath.Glob(filepath.Join(dir, "var/cache/apt/archives/*.deb"))
	for _, f := range debs {
		_ = os.Remove(f)
	}
	var desc bytes.Buffer
	fmt.Fprintf(&desc, "suite=%s\npackages=%s\n", s.suite, strings.Join(s.packages, ","))
	return os.WriteFile(filepath.Join(dir, completeMarker), desc.Bytes(), 0o644)
}

// requiredPlugins are the strongSwan plugins Start depends on; without them
// charon starts but cannot carry traffic, which is much harder to diagnose.
var requiredPlugins = []string{"openssl", "kernel-libipsec", "kernel-netlink", "socket-default", "vici"}

func verifyRoot(ctx context.Context, s distroSpec, dir string) error {
	for _, c := range s.checks {
		v, err := packageVersion(ctx, dir, c.pkg)
		if err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "chroot", dir, "dpkg", "--compare-versions", v, c.op, c.version).CombinedOutput(); err != nil {
			return fmt.Errorf("edge: %s root: %s %s is not %s %s: %v %s", s.suite, c.pkg, v, c.op, c.version, err, bytes.TrimSpace(out))
		}
	}
	for _, p := range requiredPlugins {
		so := filepath.Join(dir, "usr/lib/ipsec/plugins", "libstrongswan-"+p+".so")
		if _, err := os.Stat(so); err != nil {
			return fmt.Errorf("edge: %s root lacks plugin %s: %w", s.suite, p, err)
		}
	}
	return nil
}

// packageVersion asks the root's dpkg for an installed package's version.
func packageVersion(ctx context.Context, root, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "chroot", root, "dpkg-query", "-W", "-f=${Version}", pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("edge: dpkg-query %s in %s: %w: %s", pkg, root, err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// PackageVersion reports the version of a Debian package installed in the
// cached root of d, building the root if needed.
func (c *Cache) PackageVersion(ctx context.Context, d Distro, pkg string) (string, error) {
	root, err := c.Root(ctx, d)
	if err != nil {
		return "", err
	}
	return packageVersion(ctx, root, pkg)
}
