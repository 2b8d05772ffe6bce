package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// maxRootRotations bounds how many root versions one refresh walks, so a
// repository cannot keep a client busy forever.
const maxRootRotations = 64

// Fetcher reads a repository file by its name relative to the repository's
// base ("timestamp.json", "3.targets.json"). It returns ErrNotFound for a
// missing file and ErrTooLarge when the file is longer than max.
type Fetcher interface {
	Fetch(ctx context.Context, name string, max int64) ([]byte, error)
}

// LocalStore keeps the trusted metadata on the device (the data
// partition), so rollback protection survives a reboot. Load returns an
// error wrapping fs.ErrNotExist when a role has never been saved.
type LocalStore interface {
	Load(role Role) ([]byte, error)
	Save(role Role, data []byte) error
}

// Client is the device side of the repository: it walks the TUF update
// workflow (root rotation, timestamp, snapshot, targets) against a Fetcher
// and keeps what it verified in a LocalStore.
type Client struct {
	fetch Fetcher
	local LocalStore
	now   func() time.Time
	cache *VerifyCache

	root      *Root
	rootHash  [32]byte
	timestamp *Timestamp
	snapshot  *Snapshot
	snapHash  [32]byte
	targets   *Targets
	targHash  [32]byte
}

// ClientOptions configures a client. Now defaults to time.Now; Cache is
// optional (see VerifyCache).
type ClientOptions struct {
	Fetcher Fetcher
	Local   LocalStore
	Now     func() time.Time
	Cache   *VerifyCache
}

// NewClient starts from initialRoot (the root shipped in the image) unless
// the local store holds a newer trusted root, then loads the other trusted
// roles the store holds. Nothing is fetched until Refresh.
func NewClient(initialRoot []byte, o ClientOptions) (*Client, error) {
	c := &Client{fetch: o.Fetcher, local: o.Local, now: o.Now, cache: o.Cache}
	if c.now == nil {
		c.now = time.Now
	}
	if c.local == nil {
		c.local = NewMemStore()
	}
	rootRaw := initialRoot
	if b, err := c.local.Load(RoleRoot); err == nil {
		rootRaw = b
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repo: loading trusted root: %w", err)
	}
	root, err := c.selfSignedRoot("trusted root.json", rootRaw)
	if err != nil {
		return nil, err
	}
	c.setRoot(root, rootRaw)
	// The other roles are only a floor for rollback checks: they were
	// verified when saved, and are verified against the current root
	// before being trusted for anything else.
	if b, err := c.local.Load(RoleTimestamp); err == nil {
		if ts, err := c.verifyTimestamp("trusted timestamp.json", b); err == nil {
			c.timestamp = ts
		}
	}
	if b, err := c.local.Load(RoleSnapshot); err == nil {
		if s, err := c.verifySnapshot("trusted snapshot.json", b); err == nil {
			c.snapshot, c.snapHash = s, sha256.Sum256(b)
		}
	}
	if b, err := c.local.Load(RoleTargets); err == nil {
		if t, err := c.verifyTargets("trusted targets.json", b); err == nil {
			c.targets, c.targHash = t, sha256.Sum256(b)
		}
	}
	return c, nil
}

func (c *Client) setRoot(r *Root, raw []byte) { c.root, c.rootHash = r, sha256.Sum256(raw) }

// Root returns the trusted root.
func (c *Client) Root() *Root { return c.root }

// Targets returns the verified targets metadata of the last Refresh (nil
// before the first). Callers must not modify it: it may be shared.
func (c *Client) Targets() *Targets { return c.targets }

// Refresh runs the update workflow. On any error the trusted metadata is
// what it was before the failing step: a failed refresh never lowers a
// version or trusts an unverified file.
func (c *Client) Refresh(ctx context.Context) error {
	if err := c.updateRoot(ctx); err != nil {
		return err
	}
	if err := c.updateTimestamp(ctx); err != nil {
		return err
	}
	if err := c.updateSnapshot(ctx); err != nil {
		return err
	}
	return c.updateTargets(ctx)
}

// updateRoot walks N+1.root.json, N+2.root.json, ... Each new root must be
// signed by a threshold of the previous root's root keys and of its own,
// and carry exactly the next version.
func (c *Client) updateRoot(ctx context.Context) error {
	for range maxRootRotations {
		next := c.root.Version + 1
		name := RootFile(next)
		raw, err := c.fetch.Fetch(ctx, name, MaxRootSize)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("repo: fetching %s: %w", name, err)
		}
		env, err := parseEnvelope(name, raw)
		if err != nil {
			return err
		}
		if err := verifyRole(name, env, c.root, RoleRoot); err != nil {
			return fmt.Errorf("%w (signed by the trusted root's keys)", err)
		}
		root, err := c.selfSignedRoot(name, raw)
		if err != nil {
			return err
		}
		if root.Version != next {
			return fmt.Errorf("%s: field \"signed.version\": %w: is %d; expected %d (the file name's version)", name, ErrFormat, root.Version, next)
		}
		// Rotated timestamp or snapshot keys: forget those roles, so a
		// fast-forward attack with the old keys cannot block the new ones.
		old := c.root
		c.setRoot(root, raw)
		if !sameRoleKeys(old, root, RoleTimestamp) {
			c.timestamp = nil
		}
		if !sameRoleKeys(old, root, RoleSnapshot) {
			c.timestamp, c.snapshot = nil, nil
		}
		if err := c.local.Save(RoleRoot, raw); err != nil {
			return fmt.Errorf("repo: saving %s: %w", name, err)
		}
	}
	if now := c.now(); !now.Before(c.root.Expires) {
		return fmt.Errorf("root.json version %d: %w: expired at %s (now %s)", c.root.Version, ErrExpired,
			c.root.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func sameRoleKeys(a, b *Root, role Role) bool {
	x, y := slices.Clone(a.Roles[role].KeyIDs), slices.Clone(b.Roles[role].KeyIDs)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y) && a.Roles[role].Threshold == b.Roles[role].Threshold
}

// selfSignedRoot parses a root and checks it is signed by a threshold of
// its own root keys.
func (c *Client) selfSignedRoot(name string, raw []byte) (*Root, error) {
	var key [32]byte
	if c.cache != nil {
		h := sha256.New()
		h.Write([]byte("self-signed root\x00"))
		h.Write(raw)
		h.Sum(key[:0])
		if v, ok := c.cache.get(key); ok {
			return v.(*Root), nil
		}
	}
	r, err := parseSelfSignedRoot(name, raw)
	if err == nil && c.cache != nil {
		c.cache.put(key, r)
	}
	return r, err
}

func parseSelfSignedRoot(name string, raw []byte) (*Root, error) {
	env, err := parseEnvelope(name, raw)
	if err != nil {
		return nil, err
	}
	var r Root
	if err := decodeStrict(name+" (signed)", env.Signed, &r); err != nil {
		return nil, err
	}
	if err := checkRoot(name, &r); err != nil {
		return nil, err
	}
	if err := verifyRole(name, env, &r, RoleRoot); err != nil {
		return nil, fmt.Errorf("%w (signed by its own root keys)", err)
	}
	return &r, nil
}

func (c *Client) updateTimestamp(ctx context.Context) error {
	raw, err := c.fetch.Fetch(ctx, TimestampFile, MaxTimestampSize)
	if err != nil {
		return fmt.Errorf("repo: fetching %s: %w", TimestampFile, err)
	}
	ts, err := c.verifyTimestamp(TimestampFile, raw)
	if err != nil {
		return err
	}
	if old := c.timestamp; old != nil {
		if ts.Version < old.Version {
			return fmt.Errorf("%s: field \"signed.version\": %w: is %d; the trusted timestamp is version %d", TimestampFile, ErrRollback, ts.Version, old.Version)
		}
		if n, o := ts.Meta["snapshot.json"].Version, old.Meta["snapshot.json"].Version; n < o {
			return fmt.Errorf("%s: field \"signed.meta.snapshot.json.version\": %w: is %d; the trusted timestamp lists %d", TimestampFile, ErrRollback, n, o)
		}
	}
	if err := c.checkExpiry(TimestampFile, ts.Common); err != nil {
		return err
	}
	if c.timestamp == nil || ts.Version > c.timestamp.Version {
		c.timestamp = ts
		if err := c.local.Save(RoleTimestamp, raw); err != nil {
			return fmt.Errorf("repo: saving %s: %w", TimestampFile, err)
		}
	}
	return nil
}

func (c *Client) verifyTimestamp(name string, raw []byte) (*Timestamp, error) {
	return verifiedAs(c, name, raw, RoleTimestamp, func(ts *Timestamp) error {
		if _, ok := ts.Meta["snapshot.json"]; !ok || len(ts.Meta) != 1 {
			return fmt.Errorf("%s: field \"signed.meta\": %w: expected exactly \"snapshot.json\"", name, ErrFormat)
		}
		return nil
	})
}

func (c *Client) updateSnapshot(ctx context.Context) error {
	want := c.timestamp.Meta["snapshot.json"]
	name := SnapshotFile(want.Version)
	if c.snapshot != nil && c.snapshot.Version == want.Version && bytes.Equal(c.snapHash[:], want.Hashes.SHA256) {
		return c.checkExpiry(name, c.snapshot.Common)
	}
	raw, err := c.fetch.Fetch(ctx, name, min(want.Length, MaxSnapshotSize))
	if err != nil {
		return fmt.Errorf("repo: fetching %s: %w", name, err)
	}
	if err := checkMetaFile(name, raw, want, fmt.Sprintf("timestamp.json (version %d)", c.timestamp.Version)); err != nil {
		return err
	}
	s, err := c.verifySnapshot(name, raw)
	if err != nil {
		return err
	}
	if s.Version != want.Version {
		return fmt.Errorf("%s: field \"signed.version\": %w: is %d; timestamp.json lists %d", name, ErrMixAndMatch, s.Version, want.Version)
	}
	if old := c.snapshot; old != nil {
		if s.Version < old.Version {
			return fmt.Errorf("%s: %w: version %d; the trusted snapshot is version %d", name, ErrRollback, s.Version, old.Version)
		}
		for f, om := range old.Meta {
			nm, ok := s.Meta[f]
			if !ok {
				return fmt.Errorf("%s: field \"signed.meta\": %w: %s was removed", name, ErrRollback, f)
			}
			if nm.Version < om.Version {
				return fmt.Errorf("%s: field \"signed.meta.%s.version\": %w: is %d; the trusted snapshot lists %d", name, f, ErrRollback, nm.Version, om.Version)
			}
		}
	}
	if err := c.checkExpiry(name, s.Common); err != nil {
		return err
	}
	c.snapshot, c.snapHash = s, sha256.Sum256(raw)
	if err := c.local.Save(RoleSnapshot, raw); err != nil {
		return fmt.Errorf("repo: saving %s: %w", name, err)
	}
	return nil
}

func (c *Client) verifySnapshot(name string, raw []byte) (*Snapshot, error) {
	return verifiedAs(c, name, raw, RoleSnapshot, func(s *Snapshot) error {
		if _, ok := s.Meta["targets.json"]; !ok {
			return fmt.Errorf("%s: field \"signed.meta\": %w: \"targets.json\" missing", name, ErrFormat)
		}
		return nil
	})
}

func (c *Client) updateTargets(ctx context.Context) error {
	want := c.snapshot.Meta["targets.json"]
	name := TargetsFile(want.Version)
	if c.targets != nil && c.targets.Version == want.Version && bytes.Equal(c.targHash[:], want.Hashes.SHA256) {
		return c.checkExpiry(name, c.targets.Common)
	}
	raw, err := c.fetch.Fetch(ctx, name, min(want.Length, MaxTargetsSize))
	if err != nil {
		return fmt.Errorf("repo: fetching %s: %w", name, err)
	}
	if err := checkMetaFile(name, raw, want, fmt.Sprintf("snapshot.json (version %d)", c.snapshot.Version)); err != nil {
		return err
	}
	t, err := c.verifyTargets(name, raw)
	if err != nil {
		return err
	}
	if t.Version != want.Version {
		return fmt.Errorf("%s: field \"signed.version\": %w: is %d; snapshot.json lists %d", name, ErrMixAndMatch, t.Version, want.Version)
	}
	if c.targets != nil && t.Version < c.targets.Version {
		return fmt.Errorf("%s: %w: version %d; the trusted targets is version %d", name, ErrRollback, t.Version, c.targets.Version)
	}
	if err := c.checkExpiry(name, t.Common); err != nil {
		return err
	}
	c.targets, c.targHash = t, sha256.Sum256(raw)
	if err := c.local.Save(RoleTargets, raw); err != nil {
		return fmt.Errorf("repo: saving %s: %w", name, err)
	}
	return nil
}

func (c *Client) verifyTargets(name string, raw []byte) (*Targets, error) {
	return verifiedAs(c, name, raw, RoleTargets, func(t *Targets) error {
		for n, f := range t.Targets {
			if len(f.Hashes.SHA256) != sha256.Size || f.Length < 0 {
				return fmt.Errorf("%s: field \"signed.targets.%s\": %w: expected a length and a 32-byte sha256", name, n, ErrFormat)
			}
			if err := f.Custom.Plan.Validate(); err != nil {
				return fmt.Errorf("%s: field \"signed.targets.%s.custom.plan\": %w: %v", name, n, ErrFormat, err)
			}
		}
		return nil
	})
}

func (c *Client) checkExpiry(name string, m Common) error {
	if now := c.now(); !now.Before(m.Expires) {
		return fmt.Errorf("%s version %d: %w: expired at %s (now %s)", name, m.Version, ErrExpired,
			m.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// signedPart is a role's signed part, which starts with the common header.
type signedPart[T any] interface {
	*T
	header() Common
}

// verifiedAs is verified for one role's file: the signed part decoded
// strictly into T, its header checked against role, then the role's own
// rules (check), so no role can skip the first two.
func verifiedAs[T any, P signedPart[T]](c *Client, name string, raw []byte, role Role, check func(P) error) (P, error) {
	v, err := c.verified(name, raw, role, func(signed []byte) (any, error) {
		p := P(new(T))
		if err := decodeStrict(name+" (signed)", signed, p); err != nil {
			return nil, err
		}
		if err := checkCommon(name, p.header(), role); err != nil {
			return nil, err
		}
		if err := check(p); err != nil {
			return nil, err
		}
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(P), nil
}

// verified parses and signature-checks a role's file under the trusted
// root, through the cache when there is one.
func (c *Client) verified(name string, raw []byte, role Role, parse func(signed []byte) (any, error)) (any, error) {
	var key [32]byte
	if c.cache != nil {
		h := sha256.New()
		h.Write(c.rootHash[:])
		h.Write([]byte(role))
		h.Write(raw)
		h.Sum(key[:0])
		if v, ok := c.cache.get(key); ok {
			return v, nil
		}
	}
	env, err := parseEnvelope(name, raw)
	if err != nil {
		return nil, err
	}
	if err := verifyRole(name, env, c.root, role); err != nil {
		return nil, err
	}
	v, err := parse(env.Signed)
	if err != nil {
		return nil, err
	}
	if c.cache != nil {
		c.cache.put(key, v)
	}
	return v, nil
}

// VerifyCache remembers metadata files that verified under a given root,
// keyed by SHA-256 over the root, the role and the file's bytes: the same
// bytes under the same keys always verify the same way. Version, expiry
// and mix-and-match checks are never cached. A fleet simulator shares one
// cache among its devices so it measures the fleet, not ML-DSA; a device
// has no use for one.
type VerifyCache struct {
	mu sync.Mutex
	m  map[[32]byte]any
}

func NewVerifyCache() *VerifyCache { return &VerifyCache{m: map[[32]byte]any{}} }

func (vc *VerifyCache) get(k [32]byte) (any, bool) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	v, ok := vc.m[k]
	return v, ok
}

func (vc *VerifyCache) put(k [32]byte, v any) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if len(vc.m) > 4096 { // a simulator's working set is a few files
		clear(vc.m)
	}
	vc.m[k] = v
}

// Target returns the verified record of a target and the path to fetch it
// from.
func (c *Client) Target(name string) (TargetFile, string, error) {
	if c.targets == nil {
		return TargetFile{}, "", fmt.Errorf("repo: target %s: no verified targets metadata yet (Refresh first)", name)
	}
	f, ok := c.targets.Targets[name]
	if !ok {
		return TargetFile{}, "", fmt.Errorf("repo: target %s: %w in targets.json version %d", name, ErrUnknown, c.targets.Version)
	}
	return f, TargetPath(name, f), nil
}

// FetchTarget downloads a whole target and checks its length and hash.
func (c *Client) FetchTarget(ctx context.Context, name string) ([]byte, error) {
	f, path, err := c.Target(name)
	if err != nil {
		return nil, err
	}
	data, err := c.fetch.Fetch(ctx, path, f.Length)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("repo: fetching target %s: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("repo: target %s (%s): %w: longer than the %d bytes targets.json version %d lists", name, path, ErrTarget, f.Length, c.targets.Version)
	}
	v := NewTargetVerifier(name, f)
	v.Write(data)
	if err := v.Check(); err != nil {
		return nil, err
	}
	return data, nil
}

// TargetVerifier hashes a target as it streams (the agent writes its
// chunks through it) and checks length and hash at the end.
type TargetVerifier struct {
	name string
	want TargetFile
	h    hash.Hash
	n    int64
}

func NewTargetVerifier(name string, f TargetFile) *TargetVerifier {
	return &TargetVerifier{name: name, want: f, h: sha256.New()}
}

func (v *TargetVerifier) Write(p []byte) (int, error) {
	v.n += int64(len(p))
	return v.h.Write(p)
}

// Check compares what was written with the targets metadata.
func (v *TargetVerifier) Check() error {
	if v.n != v.want.Length {
		return fmt.Errorf("repo: target %s: %w: is %d bytes; targets.json lists %d", v.name, ErrTarget, v.n, v.want.Length)
	}
	if sum := v.h.Sum(nil); !bytes.Equal(sum, v.want.Hashes.SHA256) {
		return fmt.Errorf("repo: target %s: %w: sha256 is %x; targets.json lists %x (release %s)", v.name, ErrTarget, sum,
			[]byte(v.want.Hashes.SHA256), v.want.Custom.Release.Version)
	}
	return nil
}

var _ io.Writer = (*TargetVerifier)(nil)

// MemStore is an in-memory LocalStore.
type MemStore struct {
	mu sync.Mutex
	m  map[Role][]byte
}

func NewMemStore() *MemStore { return &MemStore{m: map[Role][]byte{}} }

func (s *MemStore) Load(r Role) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[r]
	if !ok {
		return nil, fmt.Errorf("trusted %s.json: %w", r, fs.ErrNotExist)
	}
	return b, nil
}

func (s *MemStore) Save(r Role, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r] = slices.Clone(b)
	return nil
}

// Snapshot returns a copy of the stored files, for tests.
func (s *MemStore) Files() map[Role][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

// DirStore is a LocalStore in a directory (on the device, /data/update/tuf),
// one <role>.json each, replaced atomically.
type DirStore string

func (d DirStore) Load(r Role) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), string(r)+".json"))
}

func (d DirStore) Save(r Role, b []byte) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(string(d), string(r)+".json"), b)
}
