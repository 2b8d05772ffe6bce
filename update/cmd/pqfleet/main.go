// Command pqfleet runs the fleet side of staged rollouts: it creates and
// publishes into a release repository (plain static files), drives
// rollouts, shows their status, serves the report endpoint with the
// controller, and runs the fleet simulator.
//
//	pqfleet keygen  -keys DIR [-dev]
//	pqfleet init    -repo DIR -keys DIR
//	pqfleet publish -repo DIR -keys DIR -bundle out/<board>/update.pqb -trust KEYRING [-plan FILE | -canary ID,... -soak 24h] [-db DB]
//	pqfleet rollout start|advance|pause|resume|abort -repo DIR -keys DIR -release VERSION [-why TEXT] [-db DB]
//	pqfleet status  -repo DIR -release VERSION [-json] [-db DB]
//	pqfleet enroll  -device ID -board BOARD -key HEX [-group G] [-db DB]
//	pqfleet serve   -repo DIR -keys DIR [-listen ADDR] [-tick 1m] [-db DB]
//	pqfleet sim     -devices N [-fail 0.3] [-canary 10] [-db sqlite|pg-temp|DSN] [-json]
//
// DB is a SQLite file (default fleet.db, never inside the repository
// directory: that is served publicly) or a PostgreSQL connection string.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/fleet"
	"github.com/pqbranch/pqbranch/update/fleet/sim"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/fleet/store/pgtest"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pqfleet:", err)
		os.Exit(1)
	}
}

const usage = "usage: pqfleet keygen|init|publish|rollout|status|enroll|serve|sim [flags] (pqfleet CMD -h for flags)"

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "keygen":
		return keygen(args, out)
	case "init":
		return initRepo(args, out)
	case "publish":
		return publish(ctx, args, out)
	case "rollout":
		if len(args) == 0 {
			return errors.New("usage: pqfleet rollout start|advance|pause|resume|abort -release VERSION ...")
		}
		c, err := rollout.ParseCommand(args[0])
		if err != nil {
			return err
		}
		return command(ctx, c, args[1:], out)
	case "status":
		return status(ctx, args, out)
	case "enroll":
		return enroll(ctx, args, out)
	case "serve":
		return serve(ctx, args, out)
	case "sim":
		return simulate(ctx, args, out)
	}
	return fmt.Errorf("unknown command %q; %s", cmd, usage)
}

// flags is the common flag set.
type flags struct {
	fs                *flag.FlagSet
	repoDir, keys, db string
}

func newFlags(name string) *flags {
	f := &flags{fs: flag.NewFlagSet("pqfleet "+name, flag.ContinueOnError)}
	return f
}

func (f *flags) withRepo() *flags {
	f.fs.StringVar(&f.repoDir, "repo", "", "release repository directory")
	return f
}

func (f *flags) withKeys() *flags {
	f.fs.StringVar(&f.keys, "keys", "", "directory of role keys (root.key, targets.key, snapshot.key, timestamp.key)")
	return f
}

func (f *flags) withDB() *flags {
	f.fs.StringVar(&f.db, "db", "fleet.db", "fleet store: a SQLite file or a PostgreSQL connection string")
	return f
}

func (f *flags) parse(args []string, need ...string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	for _, n := range need {
		if fl := f.fs.Lookup(n); fl != nil && fl.Value.String() == "" {
			return fmt.Errorf("%s: flag -%s is required", f.fs.Name(), n)
		}
	}
	return nil
}

func keygen(args []string, out io.Writer) error {
	f := newFlags("keygen").withKeys()
	dev := f.fs.Bool("dev", false, "mark the keys as development keys")
	if err := f.parse(args, "keys"); err != nil {
		return err
	}
	if err := os.MkdirAll(f.keys, 0o700); err != nil {
		return err
	}
	for _, r := range repo.Roles {
		path := filepath.Join(f.keys, string(r)+".key")
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s: exists; refusing to overwrite a key", path)
		}
		k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
		if err != nil {
			return err
		}
		if err := hybrid.WritePrivateKey(path, k, *dev); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s key %s\n", path, r, k.Public().ID())
	}
	return nil
}

func readSigners(dir string) (repo.Signers, error) {
	s := repo.Signers{}
	for _, r := range repo.Roles {
		k, _, err := hybrid.ReadPrivateKey(filepath.Join(dir, string(r)+".key"))
		if err != nil {
			if r == repo.RoleRoot && errors.Is(err, os.ErrNotExist) {
				continue // the root key may stay offline after init
			}
			return nil, err
		}
		s[r] = []*hybrid.PrivateKey{k}
	}
	return s, nil
}

func initRepo(args []string, out io.Writer) error {
	f := newFlags("init").withRepo().withKeys()
	if err := f.parse(args, "repo", "keys"); err != nil {
		return err
	}
	s, err := readSigners(f.keys)
	if err != nil {
		return err
	}
	roles := map[repo.Role]repo.RoleConfig{}
	for _, r := range repo.Roles {
		if len(s[r]) == 0 {
			return fmt.Errorf("init: %s: no %s.key", f.keys, r)
		}
		roles[r] = repo.RoleConfig{Keys: []hybrid.PublicKey{s[r][0].Public()}, Threshold: 1}
	}
	if _, err := repo.Init(f.repoDir, roles, s, time.Now, repo.DefaultExpiry); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: repository created; ship %s in the image as the initial trusted root\n", f.repoDir, filepath.Join(f.repoDir, repo.RootFile(1)))
	return nil
}

func openController(ctx context.Context, f *flags) (*fleet.Controller, error) {
	r, err := repo.Open(f.repoDir, time.Now, repo.DefaultExpiry)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, f.db)
	if err != nil {
		return nil, err
	}
	c := &fleet.Controller{Store: st, Repo: r, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if f.keys != "" {
		if c.Signers, err = readSigners(f.keys); err != nil {
			st.Close()
			return nil, err
		}
	}
	return c, nil
}

func publish(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("publish").withRepo().withKeys().withDB()
	bundlePath := f.fs.String("bundle", "", "the bundle: out/<board>/update.pqb")
	trust := f.fs.String("trust", "", "keyring the bundle must verify with (the image's update-keys.json)")
	planFile := f.fs.String("plan", "", "rollout plan JSON (default: canary, 1%, 10%, 50%, 100%)")
	canary := f.fs.String("canary", "", "canary device ids, comma-separated (with the default plan)")
	soak := f.fs.Duration("soak", 24*time.Hour, "soak time per wave (with the default plan)")
	if err := f.parse(args, "repo", "keys", "bundle", "trust"); err != nil {
		return err
	}
	keys, err := hybrid.ReadKeyring(*trust)
	if err != nil {
		return err
	}
	h, err := bundle.VerifyFile(*bundlePath, keys, nil)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	var plan rollout.Plan
	if *planFile != "" {
		b, err := os.ReadFile(*planFile)
		if err != nil {
			return err
		}
		if plan, err = rollout.ParsePlan(*planFile, b); err != nil {
			return err
		}
	} else {
		var ids []string
		if *canary != "" {
			ids = strings.Split(*canary, ",")
		}
		plan = rollout.DefaultPlan(ids, *soak)
	}
	c, err := openController(ctx, f)
	if err != nil {
		return err
	}
	defer c.Store.Close()
	name, err := c.Publish(ctx, *bundlePath, h.Manifest.Release, plan)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "published %s (release %s, key %s); rollout pending: pqfleet rollout start -release %s\n", name, h.Manifest.Release.Version, h.KeyName, h.Manifest.Release.Version)
	return nil
}

func command(ctx context.Context, cmd rollout.Command, args []string, out io.Writer) error {
	f := newFlags("rollout " + cmd.String()).withRepo().withKeys().withDB()
	version := f.fs.String("release", "", "release version")
	why := f.fs.String("why", "", "reason, recorded with the change")
	if err := f.parse(args, "repo", "keys", "release"); err != nil {
		return err
	}
	c, err := openController(ctx, f)
	if err != nil {
		return err
	}
	defer c.Store.Close()
	st, err := c.Command(ctx, *version, cmd, *why)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "release %s: %s\n", *version, st)
	return nil
}

func status(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("status").withRepo().withDB()
	version := f.fs.String("release", "", "release version")
	asJSON := f.fs.Bool("json", false, "print JSON")
	if err := f.parse(args, "repo", "release"); err != nil {
		return err
	}
	c, err := openController(ctx, f)
	if err != nil {
		return err
	}
	defer c.Store.Close()
	st, err := c.Status(ctx, *version)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.WriteText(out)
}

func enroll(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("enroll").withDB()
	id := f.fs.String("device", "", "device id")
	board := f.fs.String("board", "", "board name")
	group := f.fs.String("group", "", "device group (for pins)")
	key := f.fs.String("key", "", "the device's Ed25519 report public key, hex")
	if err := f.parse(args, "device", "board", "key"); err != nil {
		return err
	}
	pub, err := hex.DecodeString(*key)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("enroll: flag -key: expected %d bytes of hex", ed25519.PublicKeySize)
	}
	st, err := store.Open(ctx, f.db)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Enroll(ctx, store.Device{ID: *id, Board: *board, Group: *group, Key: pub}); err != nil {
		return err
	}
	fmt.Fprintf(out, "enrolled %s (board %s)\n", *id, *board)
	return nil
}

func serve(ctx context.Context, args []string, out io.Writer) error {
	f := newFlags("serve").withRepo().withKeys().withDB()
	listen := f.fs.String("listen", "127.0.0.1:8480", "report endpoint address")
	tick := f.fs.Duration("tick", time.Minute, "controller period")
	static := f.fs.Bool("static", false, "also serve the repository under /repo/ (any web server can)")
	if err := f.parse(args, "repo", "keys"); err != nil {
		return err
	}
	c, err := openController(ctx, f)
	if err != nil {
		return err
	}
	defer c.Store.Close()
	mux := http.NewServeMux()
	mux.Handle("/v1/", (&fleet.Server{Store: c.Store, Log: c.Log}).Handler())
	if *static {
		mux.Handle("/repo/", http.StripPrefix("/repo/", http.FileServer(http.Dir(f.repoDir))))
	}
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		t := time.NewTicker(*tick)
		defer t.Stop()
		for {
			if _, err := c.Tick(ctx); err != nil {
				c.Log.Error("controller", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	fmt.Fprintf(out, "report endpoint on http://%s%s\n", *listen, "/v1/reports")
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func simulate(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("pqfleet sim", flag.ContinueOnError)
	devices := fs.Int("devices", 2000, "simulated devices")
	fail := fs.Float64("fail", 0, "fraction of devices whose update rolls back")
	canary := fs.Int("canary", 10, "canary devices")
	db := fs.String("db", "sqlite", `store: "sqlite" (a temp file), "pg-temp" (a private PostgreSQL server), or a PostgreSQL connection string`)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pqfleet-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var st store.Store
	switch *db {
	case "sqlite":
	case "pg-temp":
		cl, err := pgtest.StartCluster(ctx, pgtest.Options{Durable: true})
		if err != nil {
			return err
		}
		defer cl.Stop()
		if st, err = store.OpenPostgres(ctx, cl.DSN); err != nil {
			return err
		}
		defer st.Close()
	default:
		if st, err = store.OpenPostgres(ctx, *db); err != nil {
			return err
		}
		defer st.Close()
	}
	res, err := sim.Run(ctx, sim.Config{Devices: *devices, FailFraction: *fail, Canary: *canary, Dir: dir, Store: st})
	if err != nil {
		return err
	}
	fig := map[string]any{
		"devices": res.Devices, "store": *db, "final": res.Final.String(), "exposed": res.Exposed,
		"committed": res.Committed, "rolled_back": res.RolledBack, "sim_time": res.SimTime.String(),
		"wall_seconds": res.Wall.Seconds(), "check_ins": res.CheckIns, "bytes_per_check_in": res.BytesPerCheckIn(),
		"reports": res.Reports, "reports_per_second": res.ReportsPerSecond(),
	}
	if *asJSON {
		return json.NewEncoder(out).Encode(fig)
	}
	fmt.Fprintf(out, "%d devices (%s store): %s after %s simulated\n", res.Devices, *db, res.Final, res.SimTime)
	fmt.Fprintf(out, "  exposed %d, committed %d, rolled back %d\n", res.Exposed, res.Committed, res.RolledBack)
	fmt.Fprintf(out, "  wall %.1fs; %d check-ins, %.0f bytes/check-in; %d reports at %.0f reports/s\n",
		res.Wall.Seconds(), res.CheckIns, res.BytesPerCheckIn(), res.Reports, res.ReportsPerSecond())
	return res.Status.WriteText(out)
}
