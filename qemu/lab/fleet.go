package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/update/fleet"
	"github.com/pqbranch/pqbranch/update/fleet/store"
	"github.com/pqbranch/pqbranch/update/repo"
)

// The lab's fleet: a release repository served as plain files by the
// update server (under RepoURL), and the fleet's report endpoint with its
// rollout controller in the WAN namespace, as a fleet operator's servers
// on the internet would be. Both run on the lab's clock, so metadata the
// controller signs is valid at the time the box is told it is.

// FleetPort is the report endpoint's TCP port on edge.EdgeWANAddr. It
// speaks HTTPS with the update server's certificate, which the board's
// default update.ca trusts.
const FleetPort = 8444

// repoDir is the repository's directory under the update server's root.
const repoDir = "repo"

// RepoURL is the repository's base URL (update.repository).
func RepoURL() string { return UpdateURL(repoDir + "/") }

// ReportURL is the report endpoint's base URL (update.report_url).
func ReportURL() string {
	return fmt.Sprintf("https://%s", net.JoinHostPort(edge.EdgeWANAddr, fmt.Sprint(FleetPort)))
}

// Fleet is the lab's fleet side. Controller publishes releases into the
// repository and starts, pauses or aborts their rollouts; Store holds the
// enrolled devices and their reports.
type Fleet struct {
	Controller *fleet.Controller
	Store      store.Store
	srv        *http.Server
}

// StartFleet serves the repository in dir under RepoURL and starts the
// report endpoint and a controller over a SQLite store in the lab's
// directory. signers are the repository's online keys (targets, snapshot,
// timestamp). The repository was made before the lab (its root is baked
// into the image the box boots), so the update server links to it rather
// than holding a copy that could go stale.
func (l *Lab) StartFleet(ctx context.Context, dir string, signers repo.Signers, log *slog.Logger) (_ *Fleet, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.Symlink(abs, filepath.Join(l.updates.dir, repoDir)); err != nil {
		return nil, fmt.Errorf("lab: fleet: serve the repository: %w", err)
	}
	r, err := repo.Open(abs, l.Now, repo.DefaultExpiry)
	if err != nil {
		return nil, fmt.Errorf("lab: fleet: %w", err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(l.tmpDir, "fleet.db"))
	if err != nil {
		return nil, fmt.Errorf("lab: fleet: %w", err)
	}
	f := &Fleet{Store: st, Controller: &fleet.Controller{Store: st, Repo: r, Signers: signers, Now: l.Now, Log: log}}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	cert, err := tls.X509KeyPair(updateCert, updateKey)
	if err != nil {
		return nil, fmt.Errorf("lab: fleet: %w", err)
	}
	var ln net.Listener
	if err := l.Site.GW.Do(func() error {
		ln, err = net.Listen("tcp4", net.JoinHostPort(edge.EdgeWANAddr, fmt.Sprint(FleetPort)))
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab: fleet: report endpoint: %w", err)
	}
	server := &fleet.Server{Store: st, Now: l.Now, Log: log}
	f.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		Handler:           server.Handler(),
	}
	go f.srv.ServeTLS(ln, "", "")
	return f, nil
}

// Close stops the report endpoint and closes the store.
func (f *Fleet) Close() error {
	err := f.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, f.Store.Close())
}
