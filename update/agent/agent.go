// Package agent is the device side of A/B updates. It fetches a signed
// bundle (HTTPS with resumable Range requests, or a local file), verifies
// it chunk by chunk while writing the inactive slot, reads the slot back,
// waits for the maintenance window, boots the new slot once (BootNext),
// and commits it when the appliance is healthy or lets the firmware fall
// back to the old slot when it is not. Everything it must remember across
// power cuts is in DataDir/state.json; it never writes anywhere else
// except the inactive slot and the boot variables.
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/rollout"
	"github.com/pqbranch/pqbranch/update/window"
)

// Defaults for the Options durations left zero.
const (
	DefaultTrialTimeout   = 10 * time.Minute
	DefaultCheckInterval  = 6 * time.Hour
	DefaultRebootBudget   = 5 * time.Minute
	DefaultHealthInterval = 10 * time.Second
)

// maxTrialBoots is how many times one build may be booted on trial. The
// second boot exists because a trial that left no verdict may have been
// cut by a power failure rather than by a fault in the build.
const maxTrialBoots = 2

// Options configure an Agent. The appliance fills them from the config,
// the running release and the boot disk.
type Options struct {
	DataDir string          // /data/update: state.json
	Running release.Release // the release this slot runs
	Slot    string          // the slot this boot came from: "A" or "B"
	Disk    SlotIO          // opens the inactive slot (real: SlotFiles from update/slots)
	Boot    BootControl     // real: *efiboot.Manager
	Keys    hybrid.Keyring  // keys bundles must be signed with

	Window       window.Window // maintenance window; zero: any time
	DeviceID     string        // spreads a fleet's reboots over the window
	RebootBudget time.Duration // how long a reboot into the trial may take; the window must leave this much

	URL           string         // update.url: HTTPS URL of a bundle; "" checks nothing periodically
	CA            *x509.CertPool // CAs the update servers are checked against; nil: the system pool
	CheckInterval time.Duration  // how often URL (or Repository) is checked

	// Repository is update.repository, the https base URL of a release
	// repository: the agent checks in there instead of reading URL, and
	// installs what the signed rollout state offers this device. RepoRoot
	// is the root metadata the image ships. Repo, when set, replaces the
	// HTTPS client built from the two (tests).
	Repository string
	RepoRoot   []byte
	Repo       Repository
	Group      string // device group, for the repository's version pins

	// ReportURL is update.report_url: the fleet's report endpoint, where
	// the outcome of every update (committed or rolled back) is sent,
	// signed with the device's report key (DataDir/report-key).
	ReportURL string

	// Health reports whether the appliance works (services up, tunnel
	// established, config good). During a trial, the slot is committed
	// the first time it reports ok.
	Health         func() (ok bool, why string)
	TrialTimeout   time.Duration // how long a trial may stay unhealthy
	HealthInterval time.Duration // how often Health is polled during a trial

	Reboot func(reason string) error // reboots the machine

	Now   func() time.Time                     // the clock; default time.Now
	After func(time.Duration) <-chan time.Time // timers on that clock; default time.After
	Log   *slog.Logger

	Socket string // control socket, /run/pqbranch/update.sock; "" serves none
}

// Agent runs updates for one device. Build it with New; Run drives it.
type Agent struct {
	o   Options
	log *slog.Logger
	src source // the bundle URL or the repository; nil without either

	reportKey  ed25519.PrivateKey // signs outcome reports; made once in DataDir
	sender     *report.Sender     // nil without ReportURL
	reportWake chan struct{}      // a report was queued
	saveMu     sync.Mutex         // orders writes of state.json: the worker and the reporter both save

	reqs chan request  // check and install, for the worker
	wake chan struct{} // apply-now while staged

	mu        sync.Mutex
	p         persisted          // the worker's state; mu guards it for Status
	st        Status             // live status
	op        context.CancelFunc // cancels the running download or staged wait
	cancelled bool               // op was cancelled by the operator
	applyNow  bool               // skip the window for the staged (or downloading) update
	verified  string             // header hash whose slot was read back in this process
}

// New checks the options and loads DataDir/state.json. It touches no
// boot variable and no slot: Run does.
func New(o Options) (*Agent, error) {
	switch {
	case o.DataDir == "":
		return nil, errors.New("agent: Options.DataDir: missing")
	case o.Slot != "A" && o.Slot != "B":
		return nil, fmt.Errorf("agent: Options.Slot: is %q; expected \"A\" or \"B\"", o.Slot)
	case o.Disk == nil:
		return nil, errors.New("agent: Options.Disk: missing")
	case o.Boot == nil:
		return nil, errors.New("agent: Options.Boot: missing")
	case o.Health == nil:
		return nil, errors.New("agent: Options.Health: missing (a trial could never be judged)")
	case o.Reboot == nil:
		return nil, errors.New("agent: Options.Reboot: missing")
	case len(o.Keys.Keys) == 0:
		return nil, errors.New("agent: Options.Keys: no trusted key")
	case o.URL != "" && (o.Repository != "" || o.Repo != nil):
		return nil, errors.New("agent: Options.URL and Options.Repository: both set; expected one (update.url or update.repository)")
	}
	if o.TrialTimeout <= 0 {
		o.TrialTimeout = DefaultTrialTimeout
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.RebootBudget <= 0 {
		o.RebootBudget = DefaultRebootBudget
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		o:          o,
		log:        o.Log.With("svc", "update"),
		reqs:       make(chan request),
		wake:       make(chan struct{}, 1),
		reportWake: make(chan struct{}, 1),
	}
	a.st = Status{State: Idle, Slot: o.Slot, Version: o.Running.Version, BuildID: o.Running.BuildID, DeviceID: o.DeviceID}
	switch {
	case o.URL != "":
		s, err := newHTTPSource(o.URL, o.CA)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.src = s
	case o.Repository != "" || o.Repo != nil:
		if o.DeviceID == "" {
			return nil, errors.New("agent: Options.DeviceID: missing (a repository check-in needs it)")
		}
		r := o.Repo
		if r == nil {
			hr, err := NewHTTPRepository(RepositoryOptions{URL: o.Repository, Root: o.RepoRoot, CA: o.CA, DataDir: o.DataDir, Now: o.Now,
				Device: rollout.Device{ID: o.DeviceID, Board: o.Running.Board, Group: o.Group, Version: o.Running.Version, Epoch: o.Running.Epoch}})
			if err != nil {
				return nil, fmt.Errorf("agent: %w", err)
			}
			r = hr
		}
		a.src = &repoSource{repo: r, checkedIn: a.checkedIn}
		a.st.Repository = r.String()
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	key, err := reportKey(o.DataDir)
	if err != nil {
		return nil, err
	}
	a.reportKey = key
	a.st.ReportKey = hex.EncodeToString(key.Public().(ed25519.PublicKey))
	if o.ReportURL != "" {
		if o.DeviceID == "" {
			return nil, errors.New("agent: Options.DeviceID: missing (reports name the device)")
		}
		a.sender = &report.Sender{URL: o.ReportURL, Device: o.DeviceID, Key: key, Client: newHTTPClient(o.CA)}
	}
	p, err := loadState(o.DataDir)
	if err != nil {
		return nil, err
	}
	a.p = p
	return a, nil
}

// inactive is the slot the agent writes: never the one it runs from.
func (a *Agent) inactive() string {
	if a.o.Slot == "A" {
		return "B"
	}
	return "A"
}

// floor is the security version a bundle must reach: the committed floor,
// and never below what this slot already runs.
func (a *Agent) floor() uint64 {
	return max(a.p.SecurityFloor, a.o.Running.SecurityVersion)
}

// Status returns a snapshot of the agent's status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	if s.Total > 0 {
		s.Percent = float64(s.Bytes) * 100 / float64(s.Total)
	}
	s.SecurityFloor = a.floor()
	s.Window = "any time"
	if !a.o.Window.IsZero() {
		s.Window = a.o.Window.String()
	}
	if a.p.Last != nil {
		last := *a.p.Last
		s.Last = &last
	}
	s.ReportsPending = len(a.p.Reports)
	return s
}

// set changes the live status under the lock.
func (a *Agent) set(f func(s *Status)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.st)
}

// save persists p (the worker's only writer) and logs a failure: the
// callers carry on, because an unsaved position only costs a re-download.
func (a *Agent) save() error {
	// The snapshot is taken under saveMu, so the file written last holds
	// the newest state whichever goroutine saves.
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	a.mu.Lock()
	p := a.p
	a.mu.Unlock()
	if err := saveState(a.o.DataDir, p); err != nil {
		a.log.Error("save update state", "err", err)
		return err
	}
	return nil
}

// update changes the persisted state under the lock and saves it.
func (a *Agent) update(f func(p *persisted)) error {
	a.mu.Lock()
	f(&a.p)
	a.mu.Unlock()
	return a.save()
}

// fail ends an operation in state Failed with err as the reason.
func (a *Agent) fail(err error) {
	a.log.Warn("update failed", "err", err)
	a.set(func(s *Status) {
		s.State = Failed
		s.Reason = err.Error()
	})
}

// Run reconciles the boot state with state.json, serves the control
// socket and works until ctx ends. It returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	// Every start: some firmware drops Boot#### entries (e.g. after a
	// power cut while a slot was being written); put them back.
	if _, err := a.o.Boot.Ensure(); err != nil {
		a.log.Error("repair boot entries", "err", err)
	}
	if a.o.Socket != "" {
		ln, err := listen(a.o.Socket)
		if err != nil {
			return err
		}
		go a.serve(ctx, ln)
	}
	if a.sender != nil {
		go a.reportLoop(ctx)
	}
	if a.reconcile() {
		a.runTrial(ctx)
	}
	return a.loop(ctx)
}

// loop is the worker: it runs one operation at a time.
func (a *Agent) loop(ctx context.Context) error {
	// Resume an interrupted download right away (it was accepted when it
	// started, so it counts as asked for), else check the URL. A failure
	// of the network or the server is retried by itself, backing off from
	// retryMin to CheckInterval.
	var nextCheck, retry <-chan time.Time
	backoff := time.Duration(0)
	attempt := func() {
		var again bool
		if s := a.resumeSource(); s != nil {
			again = a.fetch(ctx, s, true, nil)
		} else if a.src != nil {
			again = a.fetch(ctx, a.src, false, nil)
		}
		retry = nil
		if !again {
			backoff = 0
			return
		}
		backoff = min(max(2*backoff, retryMin), a.o.CheckInterval)
		retry = a.o.After(backoff)
		a.log.Info("update: retrying", "in", backoff)
	}
	if st := a.stage(); a.resumeSource() != nil || (a.src != nil && (st == Idle || st == Failed)) {
		attempt()
	}
	if a.src != nil {
		nextCheck = a.o.After(a.o.CheckInterval)
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		switch a.stage() {
		case Staged:
			a.waitWindow(ctx)
			continue
		case Rebooting, Trial:
			<-ctx.Done()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-a.reqs:
			a.handle(ctx, r)
		case <-retry:
			attempt()
		case <-nextCheck:
			a.fetch(ctx, a.src, false, nil)
			nextCheck = a.o.After(a.o.CheckInterval)
		}
	}
}

// retryMin is the first wait before retrying a check or download that
// failed for want of the network or the server.
const retryMin = 15 * time.Second

// resumeSource is where an interrupted download came from, if it can
// still be read: the configured URL or a local file (update install).
func (a *Agent) resumeSource() source {
	d := a.p.Download
	switch {
	case d == nil || d.Staged:
		return nil
	case a.src != nil && d.Source == a.src.String():
		return a.src
	case filepath.IsAbs(d.Source):
		return fileSource{d.Source}
	}
	return nil
}

// stage is the current state.
func (a *Agent) stage() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.State
}

// handle runs one request from the control socket in the worker.
func (a *Agent) handle(ctx context.Context, r request) {
	switch r.cmd {
	case CmdCheck:
		a.fetch(ctx, a.src, true, r.reply)
	case CmdInstall:
		a.fetch(ctx, fileSource{r.path}, true, r.reply)
	default:
		r.reply(fmt.Errorf("agent: command %q: not a worker command", r.cmd))
	}
}

// beginOp starts a cancellable operation (download or staged wait).
func (a *Agent) beginOp(ctx context.Context) (context.Context, func()) {
	opCtx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.op = cancel
	a.cancelled = false
	a.mu.Unlock()
	return opCtx, func() {
		a.mu.Lock()
		a.op = nil
		a.mu.Unlock()
		cancel()
	}
}

// cancelledByOperator reports (and clears) whether the operation was cancelled by `update cancel`.
func (a *Agent) cancelledByOperator() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.cancelled
	a.cancelled = false
	return c
}

// drop forgets the download or staged update after `update cancel`.
func (a *Agent) drop() {
	now := a.o.Now()
	a.mu.Lock()
	to := ""
	if a.p.Download != nil {
		to = a.p.Download.Release.Version
	}
	a.p.Download = nil
	a.p.Trial = nil
	a.p.Last = &Result{Result: OutcomeCancelled, At: now, From: a.o.Running.Version, To: to, Reason: "cancelled by the operator"}
	a.applyNow = false
	a.verified = ""
	a.mu.Unlock()
	a.save()
	a.log.Info("update cancelled", "target", to)
	a.set(func(s *Status) {
		*s = Status{State: Idle, Slot: s.Slot, Version: s.Version, BuildID: s.BuildID, Reason: "cancelled " + to}
	})
}

// human formats a duration without trailing zero units: "10m", "1h30m".
func human(d time.Duration) string {
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			s = s[:len(s)-len(suffix)+1]
		}
	}
	return s
}
