package edge

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// instance is one charon's private view of a cached root. An overlay mount
// costs ~5 ms against ~0.8 s for `cp -a` of the 230 MB root, and unlike a
// hard-link farm it can never write through into the shared cache.
type instance struct {
	dir     string // private directory: overlay layers, merged root, log
	root    string // what charon sees as /
	overlay bool
}

func newInstance(ctx context.Context, lower string) (inst *instance, err error) {
	dir, err := os.MkdirTemp("", "pqb-edge-")
	if err != nil {
		return nil, fmt.Errorf("edge: instance dir: %w", err)
	}
	inst = &instance{dir: dir, root: filepath.Join(dir, "root")}
	defer func() {
		if err != nil {
			_ = inst.close(context.Background())
		}
	}()
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("edge: instance dir: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if ovErr := syscall.Mount("overlay", inst.root, "overlay", 0, opts); ovErr == nil {
		inst.overlay = true
	} else {
		// Some hosts (nested containers, old kernels) refuse overlayfs;
		// a full copy is slower but always works.
		out, err := exec.CommandContext(ctx, "cp", "-a", lower+"/.", inst.root).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("edge: overlay mount failed (%v), cp -a %s: %w: %s", ovErr, lower, err, out)
		}
	}
	if err := inst.bindTun(); err != nil {
		return nil, err
	}
	return inst, nil
}

// bindTun makes the host's /dev/net/tun visible in the root: kernel-libipsec
// needs it, and without it charon fails to install any CHILD_SA (or crashes).
func (i *instance) bindTun() error {
	tun := filepath.Join(i.root, "dev/net/tun")
	if err := os.MkdirAll(filepath.Dir(tun), 0o755); err != nil {
		return fmt.Errorf("edge: mkdir dev/net: %w", err)
	}
	if _, err := os.Lstat(tun); err != nil {
		if err := os.WriteFile(tun, nil, 0o600); err != nil {
			return fmt.Errorf("edge: create mount point %s: %w", tun, err)
		}
	}
	if err := syscall.Mount("/dev/net/tun", tun, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("edge: bind /dev/net/tun into %s: %w", i.root, err)
	}
	return nil
}

// close unmounts everything in the instance and deletes it.
func (i *instance) close(ctx context.Context) error {
	if i == nil || i.dir == "" {
		return nil
	}
	if err := removeTree(ctx, i.dir); err != nil {
		return err
	}
	i.dir = ""
	return nil
}
