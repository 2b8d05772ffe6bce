package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/provision"
)

// stick writes a provisioning stick image: a site's config, checked with
// the appliance's own validator, on a FAT volume labelled PQBRANCH.
func stick(args []string) error {
	fs := flag.NewFlagSet("stick", flag.ExitOnError)
	cfgFile := fs.String("config", "", "the site's appliance config (validated first)")
	out := fs.String("out", "stick.img", "the raw image to write; dd it onto a USB stick")
	fs.Parse(args)
	if *cfgFile == "" {
		return errors.New("-config is required: the site's pqbranch.json")
	}
	b, err := os.ReadFile(*cfgFile)
	if err != nil {
		return err
	}
	c, err := config.Parse(*cfgFile, b)
	if err != nil {
		return err
	}
	if err := provision.WriteStick(*out, b); err != nil {
		return err
	}
	if c.Serial == 0 {
		fmt.Fprintf(os.Stderr, "note: %s has no \"serial\": a box that already runs a site config ignores this stick; set it higher than the installed one's\n", *cfgFile)
	}
	fmt.Fprintf(os.Stderr, "%s: %d MiB, FAT volume %s holding %s (hostname %s, serial %d)\n"+
		"write it to a stick with: dd if=%s of=/dev/sdX bs=1M conv=fsync\n",
		*out, provision.StickSize>>20, provision.Label, provision.FileName, c.Hostname, c.Serial, *out)
	return nil
}
