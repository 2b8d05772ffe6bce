package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

func keygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ExitOnError)
	out := fs.String("out", "", "private key file to create (mode 0600)")
	pub := fs.String("pub", "", "public keyring file to create, for -trust and bundle verify")
	name := fs.String("name", "", "the key's name in the keyring (default: the key file's name)")
	fs.Parse(args)
	if *out == "" || *pub == "" {
		return errors.New("-out and -pub are required")
	}
	if *name == "" {
		*name = filepath.Base(*out)
	}
	k, err := firmware.Keygen(*out, *pub, *name)
	if err != nil {
		return err
	}
	fmt.Printf("key %s (%s): private %s, public %s\n", k.ID(), k.Suite, *out, *pub)
	return nil
}

func bundleCmd(args []string) error {
	if len(args) < 1 {
		return errors.New("expected inspect or verify")
	}
	switch args[0] {
	case "inspect":
		if len(args) != 2 {
			return errors.New("usage: pqbuild bundle inspect FILE")
		}
		h, err := bundle.Inspect(args[1])
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "NOT VERIFIED: inspect only parses the header; use `pqbuild bundle verify`")
		b, _ := json.MarshalIndent(h.Manifest, "", "  ")
		fmt.Println(string(b))
		return nil
	case "verify":
		fs := flag.NewFlagSet("verify", flag.ExitOnError)
		keys := fs.String("keys", "", "keyring file of trusted keys (default: the development key in the cache)")
		board := fs.String("board", "", "the board the bundle must be for (default: any)")
		fs.Parse(args[1:])
		if fs.NArg() != 1 {
			return errors.New("usage: pqbuild bundle verify [-keys KEYRING] [-board NAME] FILE")
		}
		ring, err := trustedKeys(*keys)
		if err != nil {
			return err
		}
		var pol *bundle.Policy
		if *board != "" {
			pol = &bundle.Policy{Board: *board}
		}
		h, err := bundle.VerifyFile(fs.Arg(0), ring, pol)
		if err != nil {
			return err
		}
		r := h.Manifest.Release
		fmt.Printf("%s: good: pqbranch %s for %s, security version %d, %d chunks, payload %s, signed by %s\n",
			fs.Arg(0), r.Version, r.Board, r.SecurityVersion, h.Chunks(), h.Manifest.Payload.SHA256[:16], h.KeyName)
		return nil
	}
	return fmt.Errorf("unknown bundle command %q; expected inspect or verify", args[0])
}

// trustedKeys reads a keyring file, or makes one of the development key.
func trustedKeys(path string) (hybrid.Keyring, error) {
	if path != "" {
		return hybrid.ReadKeyring(path)
	}
	k, dev, err := hybrid.ReadPrivateKey(firmware.DevKeyPath(firmware.DefaultCacheDir()))
	if err != nil {
		return hybrid.Keyring{}, fmt.Errorf("no -keys given and no development key: %w", err)
	}
	return hybrid.Keyring{Keys: []hybrid.TrustedKey{{PublicKey: k.Public(), Name: "development key", Dev: dev}}}, nil
}
