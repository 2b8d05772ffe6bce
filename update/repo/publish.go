package repo

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// Signers holds the private keys a publisher signs each role with. A role
// needs at least its threshold of them; a root rotation needs the old and
// the new root's keys.
type Signers map[Role][]*hybrid.PrivateKey

// RoleConfig is a role's public keys and threshold, for a new root.
type RoleConfig struct {
	Keys      []hybrid.PublicKey
	Threshold int
}

// Expiry is how long each role's metadata stays valid after signing.
type Expiry struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiry: a year for root, three months for targets, a week for
// snapshot and a day for timestamp, which an online process re-signs.
var DefaultExpiry = Expiry{Root: 365 * 24 * time.Hour, Targets: 90 * 24 * time.Hour, Snapshot: 7 * 24 * time.Hour, Timestamp: 24 * time.Hour}

// Repo is the publisher's side of a repository directory. It reads the
// current metadata from the directory before every change, so several
// processes may publish into one directory as long as they take turns (the
// fleet controller holds its store's rollout lock while publishing).
type Repo struct {
	Dir    string
	Now    func() time.Time
	Expiry Expiry

	root      *Root
	targets   *Targets
	snapshot  *Snapshot
	timestamp *Timestamp
}

// Init creates a repository: 1.root.json with the given roles, and an empty
// targets, snapshot and timestamp. It refuses a directory that holds one.
func Init(dir string, roles map[Role]RoleConfig, s Signers, now func() time.Time, exp Expiry) (*Repo, error) {
	if _, err := os.Stat(filepath.Join(dir, RootFile(1))); err == nil {
		return nil, fmt.Errorf("repo: %s: already holds a repository (%s)", dir, RootFile(1))
	}
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	r := &Repo{Dir: dir, Now: now, Expiry: exp}
	root, err := newRoot(1, roles, now().Add(exp.Root))
	if err != nil {
		return nil, err
	}
	if err := r.writeRoot(root, s[RoleRoot]); err != nil {
		return nil, err
	}
	r.targets = &Targets{Common: Common{Type: RoleTargets, SpecVersion: SpecVersion}, Targets: map[string]TargetFile{}}
	r.snapshot = &Snapshot{Common: Common{Type: RoleSnapshot, SpecVersion: SpecVersion}}
	r.timestamp = &Timestamp{Common: Common{Type: RoleTimestamp, SpecVersion: SpecVersion}}
	if err := r.publishTargets(r.targets, s); err != nil {
		return nil, err
	}
	return r, nil
}

func newRoot(version int64, roles map[Role]RoleConfig, expires time.Time) (*Root, error) {
	root := &Root{Common: Common{Type: RoleRoot, SpecVersion: SpecVersion, Version: version, Expires: expires.UTC().Truncate(time.Second)},
		ConsistentSnapshot: true, Keys: map[string]Key{}, Roles: map[Role]RoleKeys{}}
	for _, role := range Roles {
		rc, ok := roles[role]
		if !ok {
			return nil, fmt.Errorf("repo: role %s: no keys given", role)
		}
		rk := RoleKeys{Threshold: rc.Threshold, KeyIDs: []string{}}
		for _, p := range rc.Keys {
			k, err := KeyOf(p)
			if err != nil {
				return nil, fmt.Errorf("repo: role %s: %w", role, err)
			}
			root.Keys[p.ID()] = k
			rk.KeyIDs = append(rk.KeyIDs, p.ID())
		}
		root.Roles[role] = rk
	}
	if err := checkRoot("new root", root); err != nil {
		return nil, err
	}
	return root, nil
}

// Open reads the repository's current metadata.
func Open(dir string, now func() time.Time, exp Expiry) (*Repo, error) {
	if now == nil {
		now = time.Now
	}
	r := &Repo{Dir: dir, Now: now, Expiry: exp}
	return r, r.reload()
}

// reload reads the newest root, the timestamp and what it points at. The
// publisher trusts its own directory; clients verify it.
func (r *Repo) reload() error {
	v, err := latestRoot(r.Dir)
	if err != nil {
		return err
	}
	r.root = &Root{}
	if err := r.readSigned(RootFile(v), r.root); err != nil {
		return err
	}
	r.timestamp = &Timestamp{}
	if err := r.readSigned(TimestampFile, r.timestamp); err != nil {
		return err
	}
	r.snapshot = &Snapshot{}
	if err := r.readSigned(SnapshotFile(r.timestamp.Meta["snapshot.json"].Version), r.snapshot); err != nil {
		return err
	}
	r.targets = &Targets{}
	return r.readSigned(TargetsFile(r.snapshot.Meta["targets.json"].Version), r.targets)
}

var rootName = regexp.MustCompile(`^([1-9][0-9]*)\.root\.json$`)

func latestRoot(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("repo: %w", err)
	}
	var best int64
	for _, e := range ents {
		if m := rootName.FindStringSubmatch(e.Name()); m != nil {
			if v, err := strconv.ParseInt(m[1], 10, 64); err == nil && v > best {
				best = v
			}
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("repo: %s: no N.root.json: not a repository (pqfleet init creates one)", dir)
	}
	return best, nil
}

func (r *Repo) readSigned(name string, v any) error {
	raw, err := os.ReadFile(filepath.Join(r.Dir, name))
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	env, err := parseEnvelope(name, raw)
	if err != nil {
		return err
	}
	return decodeStrict(name, env.Signed, v)
}

// Root returns the current root.
func (r *Repo) Root() *Root { return r.root }

// RootBytes returns the current root file: what an image ships as its
// initial trusted root.
func (r *Repo) RootBytes() ([]byte, error) {
	return os.ReadFile(filepath.Join(r.Dir, RootFile(r.root.Version)))
}

// Targets returns the current targets metadata (re-read from the
// directory). The caller may modify the copy it gets.
func (r *Repo) Targets() (*Targets, error) {
	if err := r.reload(); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(r.targets)
	var t Targets
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// UpdateTargets re-reads the repository, lets fn change the targets and
// publishes them as the next version with a new snapshot and timestamp.
func (r *Repo) UpdateTargets(s Signers, fn func(*Targets) error) error {
	t, err := r.Targets()
	if err != nil {
		return err
	}
	if err := fn(t); err != nil {
		return err
	}
	if t.Targets == nil {
		t.Targets = map[string]TargetFile{}
	}
	for n, f := range t.Targets {
		if err := f.Custom.Plan.Validate(); err != nil {
			return fmt.Errorf("repo: target %s: %w", n, err)
		}
	}
	return r.publishTargets(t, s)
}

// publishTargets writes targets (next version), then snapshot, then
// timestamp: a client that reads the new timestamp finds both files.
func (r *Repo) publishTargets(t *Targets, s Signers) error {
	now := r.Now()
	t.Type, t.SpecVersion = RoleTargets, SpecVersion
	t.Version = r.targets.Version + 1
	t.Expires = now.Add(r.Expiry.Targets).UTC().Truncate(time.Second)
	traw, err := sign(t, s[RoleTargets])
	if err != nil {
		return fmt.Errorf("repo: signing targets: %w", err)
	}
	if err := writeAtomic(filepath.Join(r.Dir, TargetsFile(t.Version)), traw); err != nil {
		return err
	}
	snap := &Snapshot{Common: Common{Type: RoleSnapshot, SpecVersion: SpecVersion, Version: r.snapshot.Version + 1,
		Expires: now.Add(r.Expiry.Snapshot).UTC().Truncate(time.Second)},
		Meta: map[string]MetaFile{"targets.json": metaFileOf(t.Version, traw)}}
	sraw, err := sign(snap, s[RoleSnapshot])
	if err != nil {
		return fmt.Errorf("repo: signing snapshot: %w", err)
	}
	if err := writeAtomic(filepath.Join(r.Dir, SnapshotFile(snap.Version)), sraw); err != nil {
		return err
	}
	r.targets, r.snapshot = t, snap
	return r.publishTimestamp(metaFileOf(snap.Version, sraw), s)
}

func (r *Repo) publishTimestamp(snap MetaFile, s Signers) error {
	ts := &Timestamp{Common: Common{Type: RoleTimestamp, SpecVersion: SpecVersion, Version: r.timestamp.Version + 1,
		Expires: r.Now().Add(r.Expiry.Timestamp).UTC().Truncate(time.Second)},
		Meta: map[string]MetaFile{"snapshot.json": snap}}
	raw, err := sign(ts, s[RoleTimestamp])
	if err != nil {
		return fmt.Errorf("repo: signing timestamp: %w", err)
	}
	if err := writeAtomic(filepath.Join(r.Dir, TimestampFile), raw); err != nil {
		return err
	}
	r.timestamp = ts
	return nil
}

// RefreshTimestamp re-signs the timestamp with a new expiry and the same
// snapshot: what an online process does well before the old one expires.
func (r *Repo) RefreshTimestamp(s Signers) error {
	if err := r.reload(); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(r.Dir, SnapshotFile(r.snapshot.Version)))
	if err != nil {
		return err
	}
	return r.publishTimestamp(metaFileOf(r.snapshot.Version, raw), s)
}

// Expires re-reads the repository and returns when its targets, snapshot
// and timestamp expire: an online process re-signs them before.
func (r *Repo) Expires() (targets, snapshot, timestamp time.Time, err error) {
	if err := r.reload(); err != nil {
		return time.Time{}, time.Time{}, time.Time{}, err
	}
	return r.targets.Expires, r.snapshot.Expires, r.timestamp.Expires, nil
}

// RotateRoot publishes the next root with new roles. s[RoleRoot] must hold
// a threshold of the current root keys and of the new ones: a client
// accepts the new root only when both sign it.
func (r *Repo) RotateRoot(roles map[Role]RoleConfig, s Signers) error {
	if err := r.reload(); err != nil {
		return err
	}
	root, err := newRoot(r.root.Version+1, roles, r.Now().Add(r.Expiry.Root))
	if err != nil {
		return err
	}
	return r.writeRoot(root, s[RoleRoot])
}

func (r *Repo) writeRoot(root *Root, keys []*hybrid.PrivateKey) error {
	raw, err := sign(root, keys)
	if err != nil {
		return fmt.Errorf("repo: signing root: %w", err)
	}
	if err := writeAtomic(filepath.Join(r.Dir, RootFile(root.Version)), raw); err != nil {
		return err
	}
	r.root = root
	return nil
}

// AddBundle copies a bundle into targets/ under its hash and lists it with
// its release and rollout plan, in state pending: no device takes it until
// the rollout starts. The release comes from the bundle's verified header;
// the caller (pqfleet publish) reads it with update/bundle.
func (r *Repo) AddBundle(path string, rel release.Release, plan rollout.Plan, s Signers) (string, error) {
	if err := rel.Validate(path); err != nil {
		return "", err
	}
	if err := plan.Validate(); err != nil {
		return "", err
	}
	name := rel.Board + "/" + rel.Version + ".pqb"
	src, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("repo: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Join(r.Dir, "targets"), ".bundle-*")
	if err != nil {
		return "", fmt.Errorf("repo: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("repo: copying %s: %w", path, err)
	}
	f := TargetFile{Length: n, Hashes: Hashes{SHA256: h.Sum(nil)}, Custom: TargetCustom{Release: rel, Plan: plan}}
	dst := filepath.Join(r.Dir, filepath.FromSlash(TargetPath(name, f)))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("repo: %w", err)
	}
	err = r.UpdateTargets(s, func(t *Targets) error {
		if old, ok := t.Targets[name]; ok && old.Custom.Release.BuildID != rel.BuildID {
			return fmt.Errorf("repo: %s is already published with another build (build id %s); a release version is published once", name, old.Custom.Release.BuildID)
		}
		t.Targets[name] = f
		return nil
	})
	return name, err
}

// SetRollout publishes a release's new rollout state.
func (r *Repo) SetRollout(version string, st rollout.State, s Signers) error {
	return r.UpdateTargets(s, func(t *Targets) error {
		name, f, err := t.Release(version)
		if err != nil {
			return err
		}
		f.Custom.Rollout = st
		t.Targets[name] = f
		return nil
	})
}

// writeAtomic replaces a file: a web server serving the directory never
// sends a half-written one.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("repo: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return nil
}
