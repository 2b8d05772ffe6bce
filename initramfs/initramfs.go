// Package initramfs assembles the appliance's initramfs: the pqbranch
// multi-call binary and its applet links, the board's kernel modules, the
// release description and, in dev images, u-root's debugging commands. The
// archive is sorted and its metadata fixed, so the same inputs always give the
// same bytes.
package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"
)

// Profiles.
const (
	Dev  = "dev"  // a shell and u-root's debugging commands on the console
	Prod = "prod" // no shell
)

// Spec is everything that goes into one initramfs.
type Spec struct {
	// Binary is the pqbranch multi-call binary, linked as each of Applets.
	Binary  string
	Applets []string
	// ModulesRoot is /lib/modules/<KernelRelease> of the unpacked kernel
	// package; Modules are paths relative to it, in load order.
	ModulesRoot   string
	KernelRelease string
	Modules       []string
	// ModulesDep is the modules.dep subset for Modules.
	ModulesDep []byte
	// Files are extra files by archive path (release.json, board.json,
	// the default config), mode 0644.
	Files map[string][]byte
	// URoot is a cpio archive of u-root commands (busybox mode), or "" for
	// none.
	URoot string
}

// Segments returns the initramfs as two newc archives, which the kernel
// unpacks in order when they are concatenated. Base holds what changes only
// with the kernel, the board or u-root: directories, device nodes, modules
// and u-root's commands. App holds what every build changes: the pqbranch
// binary, its links and the release files. Compressed separately, a rebuild
// reuses Base's compressed bytes (see CompressCached).
func Segments(s Spec) (base, app []byte, err error) {
	baseRecs, appRecs := map[string]cpio.Record{}, map[string]cpio.Record{}
	addBase := func(r cpio.Record) { baseRecs[r.Name] = r }
	addApp := func(r cpio.Record) { appRecs[r.Name] = r }

	for _, d := range []string{"bin", "dev", "etc", "lib", "proc", "sys", "run", "tmp", "var", "data"} {
		addBase(cpio.Directory(d, 0o755))
	}
	addBase(cpio.CharDev("dev/console", 0o600, 5, 1))
	addBase(cpio.CharDev("dev/null", 0o666, 1, 3))

	modDir := path.Join("lib/modules", s.KernelRelease)
	var load bytes.Buffer
	for _, m := range s.Modules {
		b, err := os.ReadFile(path.Join(s.ModulesRoot, m))
		if err != nil {
			return nil, nil, fmt.Errorf("initramfs: module: %w", err)
		}
		addBase(file(path.Join(modDir, m), b, 0o644))
		fmt.Fprintf(&load, "%s\n", path.Join(s.KernelRelease, m))
	}
	addBase(file(path.Join(modDir, "modules.dep"), s.ModulesDep, 0o644))
	addBase(file("lib/modules/pqbranch.load", load.Bytes(), 0o644))
	if s.URoot != "" {
		if err := addURoot(s.URoot, addBase); err != nil {
			return nil, nil, err
		}
	}

	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, nil, fmt.Errorf("initramfs: %w", err)
	}
	addApp(file("bin/pqbranch", bin, 0o755))
	for _, a := range s.Applets {
		addApp(cpio.Symlink("bin/"+a, "pqbranch"))
	}
	addApp(cpio.Symlink("init", "bin/pqbranch"))
	for name, b := range s.Files {
		addApp(file(name, b, 0o644))
	}

	if base, err = archive(baseRecs); err != nil {
		return nil, nil, err
	}
	app, err = archive(appRecs)
	return base, app, err
}

// archive writes records as one newc archive, sorted, with fixed metadata,
// and with every parent directory before its children.
func archive(recs map[string]cpio.Record) ([]byte, error) {
	for name := range recs {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := recs[d]; !ok {
				recs[d] = cpio.Directory(d, 0o755)
			}
		}
	}
	names := make([]string, 0, len(recs))
	for n := range recs {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	cw := cpio.Newc.Writer(&buf)
	for _, n := range names {
		if err := cw.WriteRecord(cpio.MakeReproducible(recs[n])); err != nil {
			return nil, fmt.Errorf("initramfs: write %s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func file(name string, b []byte, mode uint64) cpio.Record {
	return cpio.StaticRecord(b, cpio.Info{Name: name, Mode: cpio.S_IFREG | mode})
}

// addURoot copies u-root's busybox and its command links. mkuimage also
// writes its own defaults (an /init link, /etc files); the appliance's win.
func addURoot(archive string, add func(cpio.Record)) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("initramfs: u-root: %w", err)
	}
	defer f.Close()
	return cpio.ForEachRecord(cpio.Newc.Reader(f), func(r cpio.Record) error {
		if !strings.HasPrefix(r.Name, "bbin") {
			return nil
		}
		// Symlink targets are contents too; read them before the file closes.
		if r.FileSize > 0 {
			b, err := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
			if err != nil {
				return fmt.Errorf("initramfs: u-root %s: %w", r.Name, err)
			}
			r = cpio.StaticRecord(b, r.Info)
		}
		add(r)
		return nil
	})
}
