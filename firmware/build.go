// Package firmware is the top of the build: it turns a board file into a
// release's disk images and manifest, and flashes images.
package firmware

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware/debpkg"
	"github.com/pqbranch/pqbranch/images"
	"github.com/pqbranch/pqbranch/images/uki"
	"github.com/pqbranch/pqbranch/initramfs"
	"github.com/pqbranch/pqbranch/initramfs/kmod"
	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/repo"
)

// Beside disk.img in out/<board>: the signed update bundle, and the keyring
// the image trusts (the same file as the image's /etc/pqbranch/update-keys.json).
const (
	BundleName = "update.pqb"
	KeysName   = "update-keys.json"
)

// inImage turns an absolute path inside the image into an archive path.
func inImage(p string) string { return strings.TrimPrefix(p, "/") }

// writeBundle signs the slot image into an update bundle at path.
func writeBundle(path, slot string, rel release.Release, s *signer) error {
	in, err := os.Open(slot)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := bundle.Write(out, rel, in, st.Size(), s.key); err != nil {
		out.Close()
		return fmt.Errorf("bundle: %w", err)
	}
	return out.Close()
}

// Options select what to build.
type Options struct {
	Board   string // name or path of a board file
	Profile string // initramfs.Dev or initramfs.Prod
	// RepoDir is the source tree (for the version and the go build).
	RepoDir string
	// OutDir receives <board>/disk.img, disk.qcow2 and manifest.json.
	OutDir   string
	CacheDir string
	Progress io.Writer
	// Key is the release signing key's file; empty: the development key in
	// the cache (created on first use).
	Key string
	// Trust lists keyring files whose keys the image trusts besides the
	// signing key: how a release rotates to a new key.
	Trust []string
	// Fault bakes a failure into a dev image (release.Fault*), for the
	// rollback tests. Never set for prod.
	Fault string
	// Version and Epoch, when set, override what the checkout says (as
	// PQB_VERSION and SOURCE_DATE_EPOCH do): tests build several releases
	// of one tree.
	Version string
	Epoch   int64
	// RepoRoot is a release repository's root metadata file (N.root.json)
	// the image ships as release.RepoRootFile: the trust anchor of a box
	// that checks in with update.repository. Empty: none.
	RepoRoot string
	// BundleOnly skips the disk images: a release that only ever arrives
	// as an update (the tests' releases) needs its bundle alone.
	BundleOnly bool
	// GoCache is GOCACHE for the appliance's go build; "" means the
	// environment's. It is passed to that one command, never set on the
	// process, so concurrent builds each keep their own. u-root's busybox
	// build cannot take it: gobusybox gives every go command it runs the
	// process's environment plus fixed variables of its own. It builds with
	// -a, so it writes the environment's cache but never reads it.
	GoCache string
}

// Result is what a build produced.
type Result struct {
	Dir      string
	Manifest Manifest
}

// DefaultCacheDir is where fetched packages and u-root builds are kept
// between builds: $PQB_CACHE, else ~/.cache/pqbranch.
func DefaultCacheDir() string {
	if d := os.Getenv("PQB_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pqbranch")
	}
	return filepath.Join(os.TempDir(), "pqbranch-cache")
}

// Build builds the board's images. Nothing is written to OutDir unless the
// whole build succeeds: the board is validated and every input fetched and
// verified first, and the output directory is swapped in as a whole.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	p := newSteps(o.Progress, 8)
	if o.Profile == "" {
		o.Profile = initramfs.Dev
	}
	if o.Profile != initramfs.Dev && o.Profile != initramfs.Prod {
		return nil, fmt.Errorf("profile %q: expected %q or %q", o.Profile, initramfs.Dev, initramfs.Prod)
	}
	board, err := boards.Load(o.Board)
	if err != nil {
		return nil, err
	}
	modNames, err := board.ExpandModules()
	if err != nil {
		return nil, err
	}
	defaultConfig, err := board.DefaultConfigBytes()
	if err != nil {
		return nil, err
	}
	rel, err := CurrentRelease(ctx, o.RepoDir)
	if err != nil {
		return nil, err
	}
	var repoRoot []byte
	if o.RepoRoot != "" {
		if repoRoot, err = readRepoRoot(o.RepoRoot); err != nil {
			return nil, err
		}
	}
	sign, err := loadSigner(o.Key, o.CacheDir, o.Trust)
	if err != nil {
		return nil, err
	}
	if o.Version != "" {
		rel.Version = o.Version
	}
	if o.Epoch != 0 {
		rel.Epoch = o.Epoch
	}
	rel.Board, rel.Profile, rel.DevKey, rel.Fault = board.Name, o.Profile, sign.dev, o.Fault
	if err := rel.Validate("build"); err != nil {
		return nil, err
	}
	p.step("pqbranch %s, board %s, profile %s", rel.Version, board.Name, o.Profile)

	p.step("kernel %s %s", board.Kernel.Package, board.Kernel.Version)
	kernel, stub, err := fetchKernel(ctx, o.CacheDir, board, p)
	if err != nil {
		return nil, err
	}
	mods, depSubset, err := kernel.resolve(modNames)
	if err != nil {
		return nil, fmt.Errorf("%s: field \"modules\": %w", board.File, err)
	}
	p.detail("%d modules with dependencies", len(mods))

	p.step("appliance commands")
	work, err := os.MkdirTemp("", "pqb-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin, applets, err := buildAppliance(ctx, o.RepoDir, work, o.GoCache)
	if err != nil {
		return nil, err
	}
	var uroot string
	if o.Profile == initramfs.Dev {
		if uroot, err = initramfs.URootArchive(o.CacheDir, o.RepoDir, initramfs.DebugCommands, o.Progress); err != nil {
			return nil, err
		}
	}

	p.step("initramfs")
	rel.Kernel = kernel.release
	boardJSON, _ := json.MarshalIndent(board, "", "  ")
	files := map[string][]byte{
		inImage(release.File):      rel.Marshal(),
		inImage(release.BoardFile): append(boardJSON, '\n'),
		inImage(release.KeysFile):  sign.ring.Marshal(),
	}
	if defaultConfig != nil {
		files[inImage(release.DefaultConfigFile)] = defaultConfig
	}
	if repoRoot != nil {
		files[inImage(release.RepoRootFile)] = repoRoot
	}
	base, app, err := initramfs.Segments(initramfs.Spec{
		Binary: bin, Applets: applets,
		ModulesRoot: kernel.modRoot, KernelRelease: kernel.release, Modules: mods, ModulesDep: depSubset,
		Files: files, URoot: uroot,
	})
	if err != nil {
		return nil, err
	}
	baseZ, baseMethod, err := initramfs.CompressCached(o.CacheDir, base)
	if err != nil {
		return nil, err
	}
	appZ, appMethod, err := initramfs.Compress(app)
	if err != nil {
		return nil, err
	}
	// The kernel unpacks concatenated compressed archives in order.
	initrd := append(baseZ, appZ...)
	compression := baseMethod + "+" + appMethod
	rawSize := len(base) + len(app)
	p.detail("%.1f MiB raw, %.1f MiB compressed (%s)", float64(rawSize)/(1<<20), float64(len(initrd))/(1<<20), compression)

	p.step("unified kernel image")
	cmdline := "console=" + board.Console + " panic=10 quiet"
	if board.Cmdline != "" {
		cmdline += " " + board.Cmdline
	}
	osrel := fmt.Sprintf("ID=pqbranch\nNAME=pqbranch\nVERSION_ID=%s\nPRETTY_NAME=\"pqbranch %s (%s)\"\n", rel.Version, rel.Version, board.Name)
	efi, err := uki.Build(stub, []uki.Section{
		{Name: ".osrel", Data: []byte(osrel)},
		{Name: ".cmdline", Data: []byte(cmdline)},
		{Name: ".linux", Data: kernel.vmlinuz},
		{Name: ".initrd", Data: initrd},
	})
	if err != nil {
		return nil, err
	}

	p.step("disk image (%d MiB)", board.Disk.SizeMiB)
	dir := filepath.Join(o.OutDir, board.Name)
	stage, err := os.MkdirTemp(o.OutDir, "."+board.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	rawPath := filepath.Join(stage, "disk.img")
	if err := os.WriteFile(filepath.Join(stage, "pqbranch.efi"), efi, 0o644); err != nil {
		return nil, err
	}
	spec := images.Spec{Board: board.Name, Version: rel.Version, SizeMiB: board.Disk.SizeMiB, UKI: efi, Epoch: rel.Epoch,
		Slot: filepath.Join(work, "slot.img")}
	if err := images.WriteSlot(spec.Slot, spec); err != nil {
		return nil, err
	}
	artifacts := []string{"pqbranch.efi", BundleName, KeysName}
	if !o.BundleOnly {
		if err := images.WriteRaw(rawPath, spec, o.Progress); err != nil {
			return nil, err
		}
		if err := images.QCOW2(rawPath, filepath.Join(stage, "disk.qcow2"), runQuiet(ctx)); err != nil {
			return nil, err
		}
		artifacts = append(artifacts, "disk.img", "disk.qcow2")
	}
	p.step("update bundle")
	if rel.BuildID, err = debpkg.FileSHA256(spec.Slot); err != nil {
		return nil, err
	}
	if err := writeBundle(filepath.Join(stage, BundleName), spec.Slot, rel, sign); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, KeysName), sign.ring.Marshal(), 0o644); err != nil {
		return nil, err
	}
	p.detail("signed by %s", sign.ring.Keys[0].Name)
	m := Manifest{
		Release: rel,
		Kernel:  ManifestKernel{Package: board.Kernel.Package, Version: board.Kernel.Version, SHA256: board.Kernel.SHA256, Release: kernel.release},
		Initramfs: ManifestInitramfs{Compression: compression, Size: int64(len(initrd)), RawSize: int64(rawSize),
			Segments: []int64{int64(len(baseZ)), int64(len(appZ))}},
		Cmdline: cmdline,
	}
	if err := m.addArtifacts(stage, artifacts...); err != nil {
		return nil, err
	}
	if err := m.write(filepath.Join(stage, "manifest.json")); err != nil {
		return nil, err
	}
	if err := swapDir(stage, dir); err != nil {
		return nil, err
	}
	p.done("%s", dir)
	return &Result{Dir: dir, Manifest: m}, nil
}

// KernelAndStub returns the board's kernel image and the EFI stub, fetched
// and verified as for a build.
func KernelAndStub(ctx context.Context, cache string, b *boards.Board) (vmlinuz, stub []byte, err error) {
	k, stub, err := fetchKernel(ctx, cache, b, newSteps(io.Discard, 0))
	if err != nil {
		return nil, nil, err
	}
	return k.vmlinuz, stub, nil
}

// fetchKernel fetches, verifies and unpacks the board's kernel package and
// the EFI stub.
func fetchKernel(ctx context.Context, cache string, b *boards.Board, p *steps) (*kernelTree, []byte, error) {
	kpin := debpkg.Pin{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256, Field: b.File + `: field "kernel.sha256"`}
	kroot, err := fetchUnpack(ctx, cache, kpin, p)
	if err != nil {
		return nil, nil, err
	}
	k, err := unpackedKernel(kroot)
	if err != nil {
		return nil, nil, err
	}
	stubRoot, err := fetchUnpack(ctx, cache, stubPin, p)
	if err != nil {
		return nil, nil, err
	}
	stub, err := os.ReadFile(filepath.Join(stubRoot, stubPath))
	if err != nil {
		return nil, nil, fmt.Errorf("EFI stub: %w", err)
	}
	return k, stub, nil
}

func fetchUnpack(ctx context.Context, cache string, pin debpkg.Pin, p *steps) (string, error) {
	deb, err := debpkg.Fetch(ctx, cache, pin, p.w)
	if err != nil {
		return "", err
	}
	return debpkg.Unpack(ctx, cache, deb, pin.SHA256)
}

// kernelTree is an unpacked linux-image package.
type kernelTree struct {
	release string // e.g. 6.1.0-56-amd64
	vmlinuz []byte
	modRoot string
}

func unpackedKernel(root string) (*kernelTree, error) {
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("kernel package: expected one boot/vmlinuz-*, found %d", len(vmlinuz))
	}
	k := &kernelTree{release: strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")}
	k.modRoot = filepath.Join(root, "lib", "modules", k.release)
	var err error
	k.vmlinuz, err = os.ReadFile(vmlinuz[0])
	return k, err
}

// resolve returns the modules to ship in load order and their modules.dep.
func (k *kernelTree) resolve(names []string) ([]string, []byte, error) {
	deps, err := kmod.GenerateFile(k.modRoot)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(filepath.Join(k.modRoot, "modules.builtin"))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	builtin, err := kmod.ParseBuiltin(f)
	if err != nil {
		return nil, nil, err
	}
	mods, err := deps.Resolve(names, builtin)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	err = deps.Write(&buf, mods)
	return mods, buf.Bytes(), err
}

// buildAppliance builds the pqbranch multi-call binary into dir with the
// ordinary go build, whose cache makes a rebuild after one changed command
// cost only that command. dir is private to this build: concurrent builds
// of other trees must not swap binaries. goCache is Options.GoCache. It
// returns the binary and its applet names.
func buildAppliance(ctx context.Context, repo, dir, goCache string) (string, []string, error) {
	out := filepath.Join(dir, "pqbranch")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, "./services/cmd/pqbranch")
	cmd.Dir = repo
	cmd.Env = goBuildEnv(os.Environ(), goCache)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("go build ./services/cmd/pqbranch: %w\n%s", err, b)
	}
	list, err := exec.CommandContext(ctx, out, "applets").Output()
	if err != nil {
		return "", nil, fmt.Errorf("%s applets: %w", out, err)
	}
	return out, strings.Fields(string(list)), nil
}

// goBuildEnv is the environment of the appliance's go build: base (the
// process's) cross-compiling for the box, and with GOCACHE set to goCache
// unless that is "". An exec.Cmd uses the last of duplicate variables, so
// goCache wins over a GOCACHE in base.
func goBuildEnv(base []string, goCache string) []string {
	env := append(base[:len(base):len(base)], "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if goCache != "" {
		env = append(env, "GOCACHE="+goCache)
	}
	return env
}

func runQuiet(ctx context.Context) func(string, ...string) error {
	return func(name string, args ...string) error {
		if b, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(b))
		}
		return nil
	}
}

// swapDir replaces dst by src as a whole, so readers see the old build or
// the new one, never a mix.
func swapDir(src, dst string) error {
	old := dst + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		os.Rename(old, dst)
		return err
	}
	return os.RemoveAll(old)
}

// readRepoRoot reads the repository root an image is to ship, and refuses
// one a box would refuse: malformed, or not signed by its own root keys.
func readRepoRoot(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	if _, err := repo.NewClient(b, repo.ClientOptions{}); err != nil {
		return nil, fmt.Errorf("repository root %s: %w", path, err)
	}
	return b, nil
}
