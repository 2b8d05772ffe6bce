// Command pqbuild is the firmware build tool behind the Makefile: it builds
// disk images, flashes them and boots them under QEMU.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/firmware/hostdeps"
	"github.com/pqbranch/pqbranch/qemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = image(ctx, os.Args[2:])
	case "flash":
		err = flash(ctx, os.Args[2:])
	case "run":
		err = run(ctx, os.Args[2:])
	case "stick":
		err = stick(os.Args[2:])
	case "bench":
		err = benchCmd(ctx, os.Args[2:])
	case "deps":
		if len(os.Args) != 3 {
			usage()
		}
		err = hostdeps.Ensure(ctx, os.Args[2], os.Stderr)
	case "keygen":
		err = keygen(os.Args[2:])
	case "bundle":
		err = bundleCmd(os.Args[2:])
	case "accel":
		fmt.Println(qemu.DetectAccel(ctx))
	case "boards":
		for _, n := range boards.Names() {
			fmt.Println(n)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pqbuild %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: pqbuild image [-board NAME|FILE] [-profile dev|prod] [-out DIR] [-repo-root ROOT.json]
       pqbuild flash -image out/BOARD/disk.img -to /dev/sdX|FILE [-config SITE.json] [-yes]
       pqbuild stick -config SITE.json [-out stick.img]   a USB provisioning stick image (FAT, label PQBRANCH)
       pqbuild run [-board NAME]
       pqbuild bench [-board NAME]   build and boot figures as a table
       pqbuild deps image|run|test   install missing system packages
       pqbuild accel                 print kvm or tcg, whichever works here
       pqbuild boards
       pqbuild keygen -out KEY -pub KEYRING [-name NAME]   a hybrid (ML-DSA-65 + Ed25519) release signing key
       pqbuild bundle inspect FILE                          print a bundle's manifest (not verified)
       pqbuild bundle verify [-keys KEYRING] [-board NAME] FILE`)
	os.Exit(2)
}

func image(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	o := firmware.Options{Progress: os.Stderr}
	fs.StringVar(&o.Board, "board", boards.Default, "board name or board file")
	fs.StringVar(&o.Profile, "profile", "dev", "initramfs profile: dev (console shell) or prod (no shell)")
	fs.StringVar(&o.OutDir, "out", "out", "output directory")
	fs.StringVar(&o.CacheDir, "cache", firmware.DefaultCacheDir(), "cache for fetched packages and u-root builds")
	fs.StringVar(&o.Key, "key", os.Getenv("PQB_UPDATE_KEY"), "release signing key (default: the development key in the cache)")
	fs.Func("trust", "a keyring file the image trusts besides the signing key (repeatable: key rotation)", func(s string) error {
		o.Trust = append(o.Trust, s)
		return nil
	})
	fs.StringVar(&o.RepoRoot, "repo-root", "", "release repository root metadata (N.root.json) the image trusts, for update.repository")
	fs.StringVar(&o.Fault, "fault", "", "dev test images only: bake in a failure (unhealthy, panic, hang, rejectconfig)")
	fs.Parse(args)
	repo, err := repoDir()
	if err != nil {
		return err
	}
	o.RepoDir = repo
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	_, err = firmware.Build(ctx, o)
	return err
}

func flash(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("flash", flag.ExitOnError)
	img := fs.String("image", "out/"+boards.Default+"/disk.img", "raw disk image")
	to := fs.String("to", "", "target block device or file")
	yes := fs.Bool("yes", false, "do not ask before overwriting a block device")
	cfgFile := fs.String("config", "", "a site's appliance config to validate and put on the data partition")
	fs.Parse(args)
	if *to == "" {
		return errors.New("-to is required: the block device (e.g. /dev/sdb) or file to write")
	}
	o := firmware.FlashOptions{Confirmed: *yes, Progress: os.Stderr, Stdin: os.Stdin}
	if *cfgFile != "" {
		b, err := os.ReadFile(*cfgFile)
		if err != nil {
			return err
		}
		o.Config, o.ConfigName = b, *cfgFile
	}
	return firmware.Flash(ctx, *img, *to, o)
}

// repoDir finds the source tree: the build compiles the appliance from it.
func repoDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "firmware", "VERSION")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("%s is not inside the pqbranch source tree", dir)
		}
	}
}
