package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet/device"
	"github.com/pqbranch/pqbranch/update/repo"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// errNotOffered ends a check-in whose decision is to stay: no newer
// release, or its wave is not open. Not a failure of the device.
var errNotOffered = errors.New("no update offered")

// Repository is the seam for "ask the repository": a check-in that
// verifies the signed metadata and decides for this device, and the
// stream of the target it offered. HTTPRepository is the real one; tests
// may serve a repository directory any way they like.
type Repository interface {
	// Check refreshes the verified metadata and decides.
	Check(ctx context.Context) (device.Result, error)
	// Open streams the target at path (relative to the repository base)
	// from its first byte.
	Open(ctx context.Context, path string) (io.ReadCloser, error)
	// Channel describes the transport of the last Open ("" if none).
	Channel() string
	String() string
}

// HTTPRepository is a release repository on any static HTTPS server:
// metadata through update/repo's TUF workflow (trusted copies kept under
// DataDir/tuf, so rollback protection survives reboots), targets as plain
// GETs over the same TLS 1.3 channel as update.url.
type HTTPRepository struct {
	base    string
	client  *http.Client
	checker *device.Checker
	last    string
}

// RepositoryOptions configure an HTTPRepository.
type RepositoryOptions struct {
	URL     string         // update.repository: https base URL
	Root    []byte         // the root metadata the image ships (release.RepoRootFile)
	CA      *x509.CertPool // nil: the system pool
	DataDir string         // the agent's DataDir: trusted metadata goes to DataDir/tuf
	Device  rollout.Device // ID, board, group; version and epoch of the running release
	Now     func() time.Time
}

// NewHTTPRepository checks the URL and the shipped root. Nothing is
// fetched until Check.
func NewHTTPRepository(o RepositoryOptions) (*HTTPRepository, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("update.repository: is %q; expected an https:// URL", o.URL)
	}
	if len(o.Root) == 0 {
		return nil, fmt.Errorf("update.repository: the image ships no repository root metadata (%s): build it with pqbuild image -repo-root", release.RepoRootFile)
	}
	client := newHTTPClient(o.CA)
	c, err := repo.NewClient(o.Root, repo.ClientOptions{
		Fetcher: &repo.HTTPFetcher{Base: o.URL, Client: client},
		Local:   repo.DirStore(filepath.Join(o.DataDir, "tuf")),
		Now:     o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("update.repository: %w", err)
	}
	return &HTTPRepository{base: o.URL, client: client, checker: &device.Checker{Repo: c, Device: o.Device}}, nil
}

func (r *HTTPRepository) String() string  { return r.base }
func (r *HTTPRepository) Channel() string { return r.last }

// Check implements Repository.
func (r *HTTPRepository) Check(ctx context.Context) (device.Result, error) {
	return r.checker.Check(ctx)
}

// Open implements Repository.
func (r *HTTPRepository) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	u, err := url.JoinPath(r.base, path)
	if err != nil {
		return nil, fmt.Errorf("repository target %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch target: %w", err)
	}
	if resp.TLS != nil {
		r.last = fmt.Sprintf("%s %s", tls.VersionName(resp.TLS.Version), resp.TLS.CurveID)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("fetch target %s: %s", u, resp.Status)
	}
	return resp.Body, nil
}

// repoSource is the source a periodic or operator check reads when the
// agent runs against a repository. Opening it at offset 0 checks in: a
// decision to stay ends the check with errNotOffered, a decision to
// install streams the offered target. Every byte of the target passes
// through repo.TargetVerifier (length and sha256 as the signed targets
// metadata lists them) on its way into the bundle reader, which checks the
// bundle's own hybrid signature and chunk hashes as before: the online
// targets key chooses the release, the offline release key vouches for
// its bits.
type repoSource struct {
	repo Repository
	// offered is the last check-in's Install decision: what a resumed
	// open (offset > 0) reads.
	offered *device.Result
	body    *verifiedBody // the stream of the last open
	// checkedIn reports each decision, for status.
	checkedIn func(device.Result)
}

func (s *repoSource) String() string  { return s.repo.String() }
func (s *repoSource) channel() string { return s.repo.Channel() }

func (s *repoSource) open(ctx context.Context, off int64) (io.ReadCloser, error) {
	if off == 0 {
		res, err := s.repo.Check(ctx)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", s.repo, err)
		}
		if s.checkedIn != nil {
			s.checkedIn(res)
		}
		if res.Action != rollout.Install {
			s.offered = nil
			return nil, fmt.Errorf("%w: %s", errNotOffered, res.Reason)
		}
		s.offered = &res
	}
	if s.offered == nil {
		return nil, fmt.Errorf("repository %s: resume at byte %d: no target offered by a check-in", s.repo, off)
	}
	rc, err := s.repo.Open(ctx, s.offered.TargetPath)
	if err != nil {
		return nil, err
	}
	b := &verifiedBody{rc: rc, v: repo.NewTargetVerifier(s.offered.Decision.Target.Target, s.offered.Target), left: s.offered.Target.Length + 1}
	// The whole-file hash needs every byte, so a resumed download reads
	// (and hashes, without writing) the part it already has: it costs
	// bandwidth, never the slot's writes.
	if off > 0 {
		if _, err := io.CopyN(io.Discard, b, off); err != nil {
			b.Close()
			return nil, fmt.Errorf("repository target %s: skip to %d: %w", s.offered.TargetPath, off, err)
		}
	}
	s.body = b
	return b, nil
}

// expect checks a bundle header's release against what the targets
// metadata says the target carries, so a bundle swapped for another
// release's is refused before its payload is fetched (its hash would
// refuse it at the end anyway).
func (s *repoSource) expect(rel release.Release) error {
	if s.offered == nil {
		return nil
	}
	want := s.offered.Target.Custom.Release
	if rel.Version != want.Version || rel.BuildID != want.BuildID || rel.Board != want.Board {
		return fmt.Errorf("repository target %s: %w: the bundle carries release %s (build %s, board %s); targets.json lists %s (build %s, board %s)",
			s.offered.Decision.Target.Target, repo.ErrTarget, rel.Version, short(rel.BuildID), rel.Board, want.Version, short(want.BuildID), want.Board)
	}
	return nil
}

// finish reads what the agent left of the last stream (nothing, for a
// well-formed bundle) and checks the target's length and hash.
func (s *repoSource) finish() error {
	if s.body == nil {
		return errors.New("repository target: nothing was opened")
	}
	defer s.body.Close()
	if _, err := io.Copy(io.Discard, s.body); err != nil {
		return fmt.Errorf("repository target: %w", err)
	}
	return s.body.v.Check()
}

// verifiedSource is a source whose whole stream is checked against signed
// metadata besides the bundle's own signature: a repository target.
type verifiedSource interface {
	source
	expect(rel release.Release) error
	finish() error
}

// verifiedBody hashes everything read through it. It reads at most one
// byte more than the target's listed length: enough for the verifier to
// see a longer file, never an unbounded one.
type verifiedBody struct {
	rc   io.ReadCloser
	v    *repo.TargetVerifier
	left int64
}

func (b *verifiedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	b.v.Write(p[:n])
	return n, err
}

func (b *verifiedBody) Close() error { return b.rc.Close() }

var _ verifiedSource = (*repoSource)(nil)
