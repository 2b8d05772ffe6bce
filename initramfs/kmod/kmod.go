// Package kmod resolves kernel modules and their dependencies from
// modules.dep, so the initramfs carries exactly the modules a board needs and
// init can load them in order without module tools at boot.
package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Deps is a parsed modules.dep: module path (relative to
// /lib/modules/<version>) to the paths it depends on.
type Deps struct {
	deps   map[string][]string
	byName map[string]string // module name (with '_') to path
}

// Name returns a module's canonical name from its path:
// "kernel/net/ipv4/esp4.ko" -> "esp4"; '-' becomes '_' as the kernel does.
func Name(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ParseDeps reads modules.dep ("path: dep dep ...").
func ParseDeps(r io.Reader) (*Deps, error) {
	d := &Deps{deps: map[string][]string{}, byName: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok || mod == "" {
			return nil, fmt.Errorf("modules.dep: line %d: expected \"module: deps\"", n)
		}
		d.deps[mod] = strings.Fields(rest)
		d.byName[Name(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return d, nil
}

// Write writes d in modules.dep format, sorted, for a reproducible output.
func (d *Deps) Write(w io.Writer, only []string) error {
	mods := append([]string(nil), only...) // sorted below; the caller's order stays
	if only == nil {
		for m := range d.deps {
			mods = append(mods, m)
		}
	}
	sort.Strings(mods)
	bw := bufio.NewWriter(w)
	for _, m := range mods {
		fmt.Fprintf(bw, "%s:", m)
		for _, dep := range d.deps[m] {
			fmt.Fprintf(bw, " %s", dep)
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// Resolve returns the module paths to load for names, dependencies first,
// each once, in a stable order. Names of built-in modules are accepted and
// need no file. An unknown name is an error.
func (d *Deps) Resolve(names []string, builtin map[string]bool) ([]string, error) {
	var (
		order []string
		state = map[string]int{} // 1: visiting, 2: done
		visit func(p string, chain []string) error
	)
	visit = func(p string, chain []string) error {
		switch state[p] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("modules.dep: dependency cycle: %s", strings.Join(append(chain, p), " -> "))
		}
		state[p] = 1
		for _, dep := range d.deps[p] {
			if _, ok := d.deps[dep]; !ok {
				return fmt.Errorf("modules.dep: %s needs %s, which is missing", p, dep)
			}
			if err := visit(dep, append(chain, p)); err != nil {
				return err
			}
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		canon := strings.ReplaceAll(n, "-", "_")
		p, ok := d.byName[canon]
		if !ok {
			if builtin[canon] {
				continue
			}
			return nil, fmt.Errorf("module %q is neither a loadable module nor built into the kernel", n)
		}
		if err := visit(p, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ParseBuiltin reads modules.builtin (one path per line) into a set of names.
func ParseBuiltin(r io.Reader) (map[string]bool, error) {
	m := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			m[Name(line)] = true
		}
	}
	return m, sc.Err()
}
