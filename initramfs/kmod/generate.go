package kmod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Generate builds modules.dep for the modules under root
// (/lib/modules/<version>) from each module's .modinfo "depends=" entry,
// which is what depmod records. Debian's package ships no modules.dep: its
// postinst runs depmod, which the build must not need on the host.
func Generate(root string) (*Deps, error) {
	paths := map[string]string{} // name -> relative path
	depends := map[string][]string{}
	err := filepath.WalkDir(filepath.Join(root, "kernel"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".ko") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		deps, err := modinfoDepends(p)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		paths[Name(rel)] = rel
		depends[rel] = deps
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	d := &Deps{deps: map[string][]string{}, byName: map[string]string{}}
	for rel, names := range depends {
		var deps []string
		for _, n := range names {
			p, ok := paths[n]
			if !ok {
				return nil, fmt.Errorf("kmod: %s depends on %s, which has no module file", rel, n)
			}
			deps = append(deps, p)
		}
		sort.Strings(deps)
		d.deps[rel] = deps
		d.byName[Name(rel)] = rel
	}
	return d, nil
}

func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// GenerateFile writes modules.dep into root unless it is there already.
func GenerateFile(root string) (*Deps, error) {
	p := filepath.Join(root, "modules.dep")
	if f, err := os.Open(p); err == nil {
		defer f.Close()
		return ParseDeps(f)
	}
	d, err := Generate(root)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := d.Write(&buf, nil); err != nil {
		return nil, err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return d, os.Rename(tmp, p)
}
