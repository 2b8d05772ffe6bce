// Package sim simulates a fleet going through a staged rollout, end to end
// and in simulated time: a real repository directory served over HTTP on
// loopback, a real report endpoint and store, the real controller, and N
// devices, each with its own maintenance window in its own time zone, that
// check in with the real client library (update/fleet/device), download
// the bundle when their wave is open, and post signed reports. A set
// fraction of devices fails the update on purpose.
//
// What is simulated: time (a clock that steps), the install itself (a
// device that decides to install "commits" or "rolls back" at once), and
// the bundle (random bytes, checked against the targets metadata but not a
// signed update.pqb: the agent and update/bundle own that).
package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // the devices' zones, whatever the host has

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet"
	"github.com/pqbranch/pqbranch/update/fleet/device"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
	"github.com/pqbranch/pqbranch/update/window"
)

// Config is one simulation run.
type Config struct {
	Devices      int
	FailFraction float64 // fraction of devices whose update rolls back
	Canary       int     // the first Canary devices form the canary wave
	Soak         time.Duration
	MaxFailure   float64       // per wave; default 0.05
	Start        time.Time     // simulated start; default 2026-03-02 00:00 UTC
	Step         time.Duration // simulated time per step; default 1h
	Limit        time.Duration // simulated time limit; default 30 days
	// AfterHalt is how long the run continues after a halt, to show that
	// no further device installs; default one Soak.
	AfterHalt time.Duration
	Dir       string      // scratch directory: repository, SQLite file
	Store     store.Store // nil: SQLite in Dir
	Workers   int         // concurrent devices; default 4 per CPU
	Log       *slog.Logger
}

// Result is what a run shows.
type Result struct {
	Final        rollout.State
	Status       fleet.Status
	Devices      int
	Exposed      int // devices that installed the release (committed or rolled back)
	Committed    int
	RolledBack   int
	CheckIns     int64
	CheckInBytes int64 // metadata bytes the devices read over HTTP
	Reports      int64
	ReportWall   time.Duration // wall time spent posting reports
	SimTime      time.Duration
	Wall         time.Duration
}

// ReportsPerSecond is the report endpoint's throughput into the store.
func (r Result) ReportsPerSecond() float64 {
	if r.ReportWall <= 0 {
		return 0
	}
	return float64(r.Reports) / r.ReportWall.Seconds()
}

// BytesPerCheckIn is the metadata a device reads per check-in on average.
func (r Result) BytesPerCheckIn() float64 {
	if r.CheckIns == 0 {
		return 0
	}
	return float64(r.CheckInBytes) / float64(r.CheckIns)
}

const (
	board   = "sim-board"
	oldVer  = "1.0.0"
	newVer  = "2.0.0"
	oldEpoc = 1_700_000_000
)

var zones = []string{"America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "UTC", "Europe/Berlin",
	"Africa/Nairobi", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland"}

type simDevice struct {
	id        string
	key       ed25519.PrivateKey
	win       window.Window
	fails     bool
	next      time.Time // next check-in: a point inside its next window
	version   string
	outcome   report.Outcome
	checker   *device.Checker
	sender    *report.Sender
	pending   *report.Report
	installed bool
}

// clock is the simulated time every component reads.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// Run runs a simulation to completion, halt (plus AfterHalt) or Limit.
func Run(ctx context.Context, cfg Config) (Result, error) {
	wall := time.Now()
	cfg = defaults(cfg)
	clk := &clock{}
	clk.Set(cfg.Start)

	st := cfg.Store
	if st == nil {
		var err error
		if st, err = store.OpenSQLite(ctx, filepath.Join(cfg.Dir, "fleet.db")); err != nil {
			return Result{}, err
		}
		defer st.Close()
	}

	// Repository: one key per role.
	signers := repo.Signers{}
	roles := map[repo.Role]repo.RoleConfig{}
	for _, r := range repo.Roles {
		k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
		if err != nil {
			return Result{}, err
		}
		signers[r] = []*hybrid.PrivateKey{k}
		roles[r] = repo.RoleConfig{Keys: []hybrid.PublicKey{k.Public()}, Threshold: 1}
	}
	repoDir := filepath.Join(cfg.Dir, "repo")
	rp, err := repo.Init(repoDir, roles, signers, clk.Now, repo.DefaultExpiry)
	if err != nil {
		return Result{}, err
	}
	rootRaw, err := rp.RootBytes()
	if err != nil {
		return Result{}, err
	}
	ctl := &fleet.Controller{Store: st, Repo: rp, Signers: signers, Now: clk.Now, Log: cfg.Log, DeviceTTL: time.Hour}

	// Servers on loopback: the static repository and the report endpoint.
	repoURL, stopRepo, err := serve(http.FileServer(http.Dir(repoDir)))
	if err != nil {
		return Result{}, err
	}
	defer stopRepo()
	srv := &fleet.Server{Store: st, Now: clk.Now}
	reportURL, stopReports, err := serve(srv.Handler())
	if err != nil {
		return Result{}, err
	}
	defer stopReports()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers * 2, MaxIdleConns: cfg.Workers * 4}}

	// Devices and their enrollment.
	cache := repo.NewVerifyCache()
	intern := &sync.Map{}
	fetcher := &repo.HTTPFetcher{Base: repoURL, Client: hc}
	devs := make([]*simDevice, cfg.Devices)
	enroll := make([]store.Device, cfg.Devices)
	canary := make([]string, 0, cfg.Canary)
	for i := range devs {
		d, err := newDevice(i, cfg, fetcher, rootRaw, clk, cache, intern, reportURL, hc)
		if err != nil {
			return Result{}, err
		}
		devs[i] = d
		enroll[i] = store.Device{ID: d.id, Board: board, Key: d.key.Public().(ed25519.PublicKey)}
		if i < cfg.Canary {
			canary = append(canary, d.id)
		}
	}
	if err := st.Enroll(ctx, enroll...); err != nil {
		return Result{}, err
	}

	// Publish the release and start its rollout.
	plan := rollout.DefaultPlan(canary, cfg.Soak)
	for i := range plan.Waves {
		plan.Waves[i].MaxFailure = cfg.MaxFailure
	}
	bundle := filepath.Join(cfg.Dir, "update.pqb")
	payload := make([]byte, 4096)
	rand.Read(payload)
	if err := os.WriteFile(bundle, payload, 0o644); err != nil {
		return Result{}, err
	}
	sum := sha256.Sum256(payload)
	rel := release.Release{Version: newVer, Board: board, Profile: release.Prod, Epoch: oldEpoc + 1, BuildID: fmt.Sprintf("%x", sum)}
	if _, err := ctl.Publish(ctx, bundle, rel, plan); err != nil {
		return Result{}, err
	}
	if _, err := ctl.Command(ctx, newVer, rollout.Start, ""); err != nil {
		return Result{}, err
	}

	res := Result{Devices: cfg.Devices}
	var haltedAt time.Time
	end := cfg.Start.Add(cfg.Limit)
	for now := cfg.Start; now.Before(end); now = now.Add(cfg.Step) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		clk.Set(now)
		if err := step(ctx, devs, now.Add(cfg.Step), cfg.Workers, &res); err != nil {
			return res, err
		}
		if _, err := ctl.Tick(ctx); err != nil {
			return res, fmt.Errorf("sim: controller at %s: %w", now, err)
		}
		t, err := rp.Targets()
		if err != nil {
			return res, err
		}
		_, f, _ := t.Release(newVer)
		res.Final = f.Custom.Rollout
		if res.Final.Phase == rollout.Halted && haltedAt.IsZero() {
			haltedAt = now
		}
		if !haltedAt.IsZero() && now.Sub(haltedAt) >= cfg.AfterHalt {
			break
		}
		if res.Final.Phase == rollout.Complete && allUpdated(devs) {
			break
		}
		res.SimTime = now.Add(cfg.Step).Sub(cfg.Start)
	}
	for _, d := range devs {
		if d.installed {
			res.Exposed++
		}
		switch d.outcome {
		case report.Committed:
			res.Committed++
		case report.RolledBack:
			res.RolledBack++
		}
	}
	res.CheckInBytes = fetcher.Bytes.Load()
	if res.Status, err = ctl.Status(ctx, newVer); err != nil {
		return res, err
	}
	res.Wall = time.Since(wall)
	return res, nil
}

func defaults(c Config) Config {
	if c.MaxFailure == 0 {
		c.MaxFailure = 0.05
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	}
	if c.Step == 0 {
		c.Step = time.Hour
	}
	if c.Limit == 0 {
		c.Limit = 30 * 24 * time.Hour
	}
	if c.Soak == 0 {
		c.Soak = 24 * time.Hour
	}
	if c.AfterHalt == 0 {
		c.AfterHalt = c.Soak
	}
	if c.Workers == 0 {
		c.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	return c
}

// fraction maps (device, release) to [0, 1): which devices fail.
func fraction(id, version string) float64 {
	h := sha256.Sum256([]byte("sim failure\x00" + version + "\x00" + id))
	return float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53)
}

func newDevice(i int, cfg Config, f repo.Fetcher, root []byte, clk *clock, cache *repo.VerifyCache, intern *sync.Map, reportURL string, hc *http.Client) (*simDevice, error) {
	id := fmt.Sprintf("sim-%06d", i)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(zones[i%len(zones)])
	if err != nil {
		return nil, err
	}
	// Windows of two hours starting on the hour, spread by the device id.
	h := sha256.Sum256([]byte(id))
	win := window.Window{Start: time.Duration(h[0]%24) * time.Hour, Duration: 2 * time.Hour, Location: loc}
	if err := win.Validate(); err != nil {
		return nil, err
	}
	client, err := repo.NewClient(root, repo.ClientOptions{Fetcher: f, Local: newSharedStore(intern), Now: clk.Now, Cache: cache})
	if err != nil {
		return nil, err
	}
	d := &simDevice{id: id, key: key, win: win, fails: fraction(id, newVer) < cfg.FailFraction, version: oldVer,
		checker: &device.Checker{Repo: client, Device: rollout.Device{ID: id, Board: board, Version: oldVer, Epoch: oldEpoc}},
		sender:  &report.Sender{URL: reportURL, Device: id, Key: key, Client: hc}}
	at, _, ok := win.Next(cfg.Start, id, 30*time.Minute)
	if !ok {
		return nil, fmt.Errorf("sim: device %s: window %v never opens", id, win)
	}
	d.next = at
	return d, nil
}

// step lets every device whose check-in point falls before until check in,
// then posts their reports.
func step(ctx context.Context, devs []*simDevice, until time.Time, workers int, res *Result) error {
	var due []*simDevice
	for _, d := range devs {
		if d.next.Before(until) {
			due = append(due, d)
		}
	}
	if err := parallel(due, workers, func(d *simDevice) error { return d.checkIn(ctx, res) }); err != nil {
		return err
	}
	var reporting []*simDevice
	for _, d := range due {
		if d.pending != nil {
			reporting = append(reporting, d)
		}
	}
	start := time.Now()
	err := parallel(reporting, workers, func(d *simDevice) error {
		r := *d.pending
		d.pending = nil
		if err := d.sender.Send(ctx, r); err != nil {
			return err
		}
		atomic.AddInt64(&res.Reports, 1)
		return nil
	})
	res.ReportWall += time.Since(start)
	return err
}

func (d *simDevice) checkIn(ctx context.Context, res *Result) error {
	now := d.next
	atomic.AddInt64(&res.CheckIns, 1)
	next, _, ok := d.win.Next(now.Add(12*time.Hour), d.id, 30*time.Minute)
	if !ok {
		return fmt.Errorf("sim: device %s: no next window", d.id)
	}
	d.next = next
	r, err := d.checker.Check(ctx)
	if err != nil {
		return err
	}
	if r.Action != rollout.Install {
		return nil
	}
	if _, err := d.checker.Repo.FetchTarget(ctx, r.Decision.Target.Target); err != nil {
		return err
	}
	d.installed = true
	rep := report.Report{Seq: d.sender.NextSeq(0), Board: board, From: d.version, To: r.Decision.Target.Version,
		Started: now, Finished: now.Add(20 * time.Minute), DownloadMS: 60_000, InstallMS: 240_000, TrialMS: 900_000}
	if d.fails {
		rep.Outcome, rep.Reason, rep.Running = report.RolledBack, "trial: tunnel not established within 10m (simulated fault)", d.version
		// The agent marks the release bad: it does not retry it.
		d.checker.Device.Epoch = r.Decision.Target.Epoch
	} else {
		rep.Outcome, rep.Running = report.Committed, r.Decision.Target.Version
		d.version = r.Decision.Target.Version
		d.checker.Device.Version, d.checker.Device.Epoch = d.version, r.Decision.Target.Epoch
	}
	d.outcome = rep.Outcome
	d.pending = &rep
	return nil
}

func allUpdated(devs []*simDevice) bool {
	for _, d := range devs {
		if d.version != newVer && !d.fails {
			return false
		}
	}
	return true
}

// parallel runs fn over items with n workers and returns the first error.
func parallel[T any](items []T, n int, fn func(T) error) error {
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	ch := make(chan T)
	for range min(n, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(it); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	return first
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// sharedStore is a device's LocalStore whose bytes are interned across the
// fleet: 100,000 devices hold the same few metadata files.
type sharedStore struct {
	m      map[repo.Role]*[]byte
	intern *sync.Map // sha256 → *[]byte, one per run
}

func newSharedStore(intern *sync.Map) *sharedStore {
	return &sharedStore{m: map[repo.Role]*[]byte{}, intern: intern}
}

func (s *sharedStore) Load(r repo.Role) ([]byte, error) {
	if b, ok := s.m[r]; ok {
		return *b, nil
	}
	return nil, fmt.Errorf("trusted %s.json: %w", r, os.ErrNotExist)
}

func (s *sharedStore) Save(r repo.Role, b []byte) error {
	h := sha256.Sum256(b)
	v, _ := s.intern.LoadOrStore(h, &b)
	s.m[r] = v.(*[]byte)
	return nil
}
