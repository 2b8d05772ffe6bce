package lab

import (
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
)

// The lab's update server: HTTPS on the edge's WAN address, as a release
// server on the internet would be. Its certificate is issued by a test-only
// CA that the qemu-x86_64 board's default config trusts (update.ca), so
// `make run` and the tests update the appliance without touching its
// config. The CA's key is published with the source: it protects nothing
// but this lab.
var (
	//go:embed testdata/ca.pem
	UpdateCA []byte
	//go:embed testdata/server.pem
	updateCert []byte
	//go:embed testdata/server.key
	updateKey []byte
)

// UpdatePort is the update server's TCP port on edge.EdgeWANAddr.
const UpdatePort = 8443

// liveName is where Options.LiveBundle is served: the URL the qemu-x86_64
// board's default config checks.
const liveName = "update.pqb"

// UpdateURL is the URL of a file the update server serves.
func UpdateURL(name string) string {
	return fmt.Sprintf("https://%s/%s", net.JoinHostPort(edge.EdgeWANAddr, fmt.Sprint(UpdatePort)), name)
}

// Request is one request the update server answered.
type Request struct {
	Path  string
	Range string
	Group tls.CurveID // the negotiated key exchange group
}

// updateServer serves the files in dir over HTTPS, with Range requests
// (http.ServeContent), and records every request.
type updateServer struct {
	dir string
	// live, when set, is served as /update.pqb from where the build
	// writes it, read at each request: a rebuild is on offer at once.
	live string
	srv  *http.Server
	mu   sync.Mutex
	reqs []Request
}

func (l *Lab) startUpdateServer(live string) error {
	cert, err := tls.X509KeyPair(updateCert, updateKey)
	if err != nil {
		return fmt.Errorf("lab: update server: %w", err)
	}
	u := &updateServer{dir: filepath.Join(l.tmpDir, "updates"), live: live}
	if err := os.Mkdir(u.dir, 0o755); err != nil {
		return err
	}
	var ln net.Listener
	if err := l.Site.GW.Do(func() error {
		ln, err = net.Listen("tcp4", net.JoinHostPort(edge.EdgeWANAddr, fmt.Sprint(UpdatePort)))
		return err
	}); err != nil {
		return fmt.Errorf("lab: update server: %w", err)
	}
	u.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		Handler:           u,
	}
	go u.srv.ServeTLS(ln, "", "")
	l.updates = u
	return nil
}

// ServeHTTP serves the published files and the live bundle, with Range
// requests (http.ServeContent), and records every request.
func (u *updateServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var group tls.CurveID
	if r.TLS != nil {
		group = r.TLS.CurveID
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, Request{Path: r.URL.Path, Range: r.Header.Get("Range"), Group: group})
	u.mu.Unlock()
	if u.live != "" && r.URL.Path == "/"+liveName {
		http.ServeFile(w, r, u.live)
		return
	}
	http.FileServer(http.Dir(u.dir)).ServeHTTP(w, r)
}

// Publish puts the file at src on the update server as name, atomically:
// a download in progress sees the old file or the new one.
func (l *Lab) Publish(src, name string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("lab: publish: %w", err)
	}
	defer in.Close()
	dst := filepath.Join(l.updates.dir, name)
	tmp, err := os.CreateTemp(l.updates.dir, ".publish-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("lab: publish %s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// Unpublish removes name from the update server.
func (l *Lab) Unpublish(name string) error {
	err := os.Remove(filepath.Join(l.updates.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// UpdateRequests returns the requests the update server answered so far.
func (l *Lab) UpdateRequests() []Request {
	l.updates.mu.Lock()
	defer l.updates.mu.Unlock()
	return append([]Request(nil), l.updates.reqs...)
}

// clock is the lab's time: the host's clock plus an offset the tests set,
// served by the lab's time server so the appliance's clock can be moved into
// its maintenance window.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// SetTime makes the lab's time server say t now (and t+d in d's time). The
// appliance steps its clock at its next synchronisation.
func (l *Lab) SetTime(t time.Time) { l.clock.offset.Store(int64(time.Until(t))) }

// Now is the lab's time.
func (l *Lab) Now() time.Time { return l.clock.Now() }
