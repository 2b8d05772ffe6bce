package main

import (
	"context"
	"flag"
	"os"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/firmware/bench"
)

func benchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	board := fs.String("board", boards.Default, "board name or board file")
	only := fs.String("only", "", `measure one group of rows: "update"`)
	fs.Parse(args)
	repo, err := repoDir()
	if err != nil {
		return err
	}
	rows, err := bench.Run(ctx, bench.Options{Board: *board, RepoDir: repo, CacheDir: firmware.DefaultCacheDir(), Progress: os.Stderr, Only: *only})
	if err != nil {
		return err
	}
	// Every row is printed, failed or not; a failed one makes pqbuild exit
	// non-zero after the table.
	bench.Format(os.Stdout, rows)
	return bench.Failures(rows)
}
