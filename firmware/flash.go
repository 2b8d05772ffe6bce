package firmware

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pqbranch/pqbranch/images/datafs"
	"github.com/pqbranch/pqbranch/services/config"
)

// FlashOptions control Flash.
type FlashOptions struct {
	// Confirmed skips the question before a block device is overwritten.
	Confirmed bool
	Progress  io.Writer
	Stdin     io.Reader
	// Config, if set, is a site's appliance config: validated with the
	// appliance's own validator before anything is written, then put on
	// the data partition as /data/pqbranch.json after the image is written
	// and verified. The image itself stays the same for every site.
	Config []byte
	// ConfigName names the config in error messages (its file).
	ConfigName string
}

// Flash writes a raw image to a block device or a file, then reads it back
// and compares checksums. It refuses a device that is mounted (or any of
// whose partitions is) and a device smaller than the image.
func Flash(ctx context.Context, image, target string, o FlashOptions) error {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Config != nil {
		name := cmp.Or(o.ConfigName, "site config")
		if _, err := config.Parse(name, o.Config); err != nil {
			return fmt.Errorf("flash: nothing written: %w", err)
		}
	}
	src, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	size := st.Size()

	tst, err := os.Stat(target)
	isDev := err == nil && tst.Mode()&os.ModeDevice != 0
	if isDev {
		if err := checkNotMounted(target); err != nil {
			return err
		}
		if !o.Confirmed {
			fmt.Fprintf(o.Progress, "This erases everything on %s. Type yes to continue: ", target)
			line, _ := bufio.NewReader(o.Stdin).ReadString('\n')
			if strings.TrimSpace(line) != "yes" {
				return errors.New("flash: not confirmed; nothing written")
			}
		}
	}
	flags := os.O_WRONLY
	if !isDev {
		flags |= os.O_CREATE | os.O_TRUNC
	} else {
		flags |= unix.O_EXCL // the kernel refuses if anything holds the device
	}
	dst, err := os.OpenFile(target, flags, 0o644)
	if err != nil {
		return fmt.Errorf("flash: open %s: %w", target, err)
	}
	defer dst.Close()
	if isDev {
		devSize, err := dst.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		if devSize < size {
			return fmt.Errorf("flash: %s holds %d MiB; the image needs %d MiB", target, devSize>>20, size>>20)
		}
		if _, err := dst.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}

	want := sha256.New()
	pw := &progressWriter{w: o.Progress, total: size, verb: "writing", start: time.Now()}
	if _, err := copyCtx(ctx, io.MultiWriter(dst, want, pw), src); err != nil {
		return fmt.Errorf("flash: write %s: %w", target, err)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("flash: sync %s: %w", target, err)
	}
	pw.finish()

	// Read back what the device holds, not the page cache's copy.
	if isDev {
		unix.Fadvise(int(dst.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	back, err := os.Open(target)
	if err != nil {
		return err
	}
	defer back.Close()
	got := sha256.New()
	pr := &progressWriter{w: o.Progress, total: size, verb: "verifying", start: time.Now()}
	if _, err := copyCtx(ctx, io.MultiWriter(got, pr), io.LimitReader(back, size)); err != nil {
		return fmt.Errorf("flash: read back %s: %w", target, err)
	}
	pr.finish()
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return fmt.Errorf("flash: %s does not read back what was written (sha256 %x, expected %x)", target, got.Sum(nil), want.Sum(nil))
	}
	fmt.Fprintf(o.Progress, "flashed and verified %s (sha256 %x)\n", target, want.Sum(nil))
	if o.Config != nil {
		return provision(target, o)
	}
	return nil
}

// provision writes the site's config onto the freshly written data
// partition and reads it back. On first boot the appliance finds the file
// system and the config there and never applies the board default.
func provision(target string, o FlashOptions) error {
	name := filepath.Base(config.DefaultPath)
	if err := datafs.Provision(target, name, o.Config, 0o600); err != nil {
		return fmt.Errorf("flash: site config: %w", err)
	}
	back, err := datafs.ReadFile(target, name)
	if err != nil {
		return fmt.Errorf("flash: site config: read back: %w", err)
	}
	if !bytes.Equal(back, o.Config) {
		return fmt.Errorf("flash: site config: %s on %s does not read back what was written", config.DefaultPath, target)
	}
	fmt.Fprintf(o.Progress, "wrote the site config %s to %s on the data partition\n", cmp.Or(o.ConfigName, "(given)"), config.DefaultPath)
	return nil
}

// checkNotMounted fails when dev or one of its partitions is mounted.
func checkNotMounted(dev string) error {
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return err
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	resolve := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return p
	}
	if src, at := mountedOn(real, string(mounts), resolve); at != "" {
		return fmt.Errorf("flash: %s is mounted on %s; unmount it first", src, at)
	}
	return nil
}

// mountedOn returns the first mount (source and mount point) in a
// /proc/self/mounts text whose source is dev or a partition of it.
func mountedOn(dev, mounts string, resolve func(string) string) (string, string) {
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		src := resolve(f[0])
		if src == dev || (strings.HasPrefix(src, dev) && isPartitionSuffix(src[len(dev):])) {
			return src, f[1]
		}
	}
	return "", ""
}

// isPartitionSuffix reports whether s names a partition of a disk: "1" for
// sda1, "p1" for nvme0n1p1 and mmcblk0p1.
func isPartitionSuffix(s string) bool {
	s = strings.TrimPrefix(s, "p")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 4<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// progressWriter prints a percentage at most once a second.
type progressWriter struct {
	w         io.Writer
	total, n  int64
	verb      string
	start     time.Time
	lastPrint time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if time.Since(p.lastPrint) >= time.Second {
		p.lastPrint = time.Now()
		fmt.Fprintf(p.w, "%s: %3d%% (%d of %d MiB)\n", p.verb, 100*p.n/max(p.total, 1), p.n>>20, p.total>>20)
	}
	return len(b), nil
}

func (p *progressWriter) finish() {
	secs := time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "%s: 100%% (%d MiB in %.1fs)\n", p.verb, p.total>>20, secs)
}
