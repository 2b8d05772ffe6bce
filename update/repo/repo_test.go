package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/rollout"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newKey(t testing.TB) *hybrid.PrivateKey {
	t.Helper()
	k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixture is a repository with one key per role and two releases.
type fixture struct {
	dir     string
	clk     *clock
	repo    *Repo
	signers Signers
	root1   []byte
	rels    map[string]string // version → bundle bytes
}

func roleConfig(s Signers) map[Role]RoleConfig {
	out := map[Role]RoleConfig{}
	for _, r := range Roles {
		var pubs []hybrid.PublicKey
		for _, k := range s[r] {
			pubs = append(pubs, k.Public())
		}
		out[r] = RoleConfig{Keys: pubs, Threshold: len(pubs)}
	}
	return out
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), clk: &clock{t: t0}, rels: map[string]string{}}
	f.signers = Signers{}
	for _, r := range Roles {
		f.signers[r] = []*hybrid.PrivateKey{newKey(t)}
	}
	var err error
	f.repo, err = Init(f.dir, roleConfig(f.signers), f.signers, f.clk.Now, DefaultExpiry)
	if err != nil {
		t.Fatal(err)
	}
	f.root1, err = os.ReadFile(filepath.Join(f.dir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1.0.0", "2.0.0"} {
		f.publish(t, v, int64(i+1))
	}
	return f
}

func (f *fixture) publish(t *testing.T, version string, epoch int64) string {
	t.Helper()
	body := strings.Repeat("bundle "+version+"\n", 1000)
	path := filepath.Join(t.TempDir(), "update.pqb")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := release.Release{Version: version, Board: "qemu-x86_64", Profile: "prod", Epoch: epoch}
	name, err := f.repo.AddBundle(path, rel, rollout.DefaultPlan([]string{"dev-1"}, time.Hour), f.signers)
	if err != nil {
		t.Fatal(err)
	}
	f.rels[version] = body
	return name
}

// tamper is a Fetcher that serves the repository directory with some files
// replaced, as a mirror or a man in the middle could.
type tamper struct {
	DirFetcher
	mu   sync.Mutex
	over map[string][]byte
}

func (tf *tamper) Fetch(ctx context.Context, name string, max int64) ([]byte, error) {
	tf.mu.Lock()
	b, ok := tf.over[name]
	tf.mu.Unlock()
	if ok {
		if int64(len(b)) > max {
			return nil, fmt.Errorf("%s: %w", name, ErrTooLarge)
		}
		return b, nil
	}
	return tf.DirFetcher.Fetch(ctx, name, max)
}

func (f *fixture) client(t *testing.T, local LocalStore) (*Client, *tamper) {
	t.Helper()
	tf := &tamper{DirFetcher: DirFetcher(f.dir), over: map[string][]byte{}}
	c, err := NewClient(f.root1, ClientOptions{Fetcher: tf, Local: local, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c, tf
}

func (f *fixture) read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishAndVerify(t *testing.T) {
	f := newFixture(t)
	if err := f.repo.SetRollout("2.0.0", rollout.State{Phase: rollout.Running, Open: 1, OpenedAt: t0}, f.signers); err != nil {
		t.Fatal(err)
	}
	c, _ := f.client(t, nil)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	cands := c.Targets().Candidates()
	if len(cands) != 2 || cands[1].Version != "2.0.0" || cands[1].State.Phase != rollout.Running || cands[0].State.Phase != rollout.Pending {
		t.Fatalf("candidates %+v", cands)
	}
	d := rollout.Decide(rollout.Device{ID: "dev-1", Board: "qemu-x86_64", Version: "1.0.0", Epoch: 1}, cands, c.Targets().Custom.Pins)
	if d.Action != rollout.Install || d.Target.Version != "2.0.0" {
		t.Fatalf("canary decision %+v", d)
	}
	data, err := c.FetchTarget(context.Background(), d.Target.Target)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != f.rels["2.0.0"] {
		t.Errorf("fetched the wrong bundle bytes")
	}
	// A second refresh with nothing new reads only timestamp.json.
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Publishing the same version with other bits is refused.
	path := filepath.Join(t.TempDir(), "x.pqb")
	os.WriteFile(path, []byte("other"), 0o644)
	_, err = f.repo.AddBundle(path, release.Release{Version: "2.0.0", Board: "qemu-x86_64", Profile: "prod", Epoch: 2,
		BuildID: strings.Repeat("ab", 32)}, rollout.DefaultPlan(nil, 0), f.signers)
	if err == nil || !strings.Contains(err.Error(), "already published") {
		t.Errorf("republishing 2.0.0 with other bits: %v", err)
	}
}

// resign rewrites a metadata file's signatures with edit applied to each.
func resign(t *testing.T, raw []byte, edit func([]Signature) []Signature) []byte {
	t.Helper()
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	env.Signatures = edit(env.Signatures)
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func editSig(fn func(sig []byte) []byte) func([]Signature) []Signature {
	return func(s []Signature) []Signature {
		for i := range s {
			s[i].Sig = fn(bytes.Clone(s[i].Sig))
		}
		return s
	}
}

func TestAttacks(t *testing.T) {
	const pqLen = 3309 // ML-DSA-65 signature; the Ed25519 half follows
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// attack prepares the repository or the wire after a first good
		// refresh; the next refresh (or target fetch) must fail.
		attack  func(t *testing.T, f *fixture, tf *tamper, c *Client)
		fetch   string // when set, the attack is on this release's bundle
		wantIs  []error
		wantMsg string
	}{
		{
			name: "replayed older timestamp (rollback)",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				old := f.read(t, TimestampFile)
				f.repo.SetRollout("2.0.0", rollout.State{Phase: rollout.Running, Open: 1}, f.signers)
				if err := c.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				tf.over[TimestampFile] = old
			},
			wantIs:  []error{ErrRollback},
			wantMsg: "timestamp.json: field \"signed.version\": rollback",
		},
		{
			name: "replayed older targets under the new name (mix-and-match)",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				old := f.read(t, TargetsFile(f.repo.targets.Version))
				f.repo.SetRollout("2.0.0", rollout.State{Phase: rollout.Running, Open: 5}, f.signers)
				tf.over[TargetsFile(f.repo.targets.Version)] = old
			},
			wantIs:  []error{ErrMixAndMatch},
			wantMsg: "snapshot.json (version",
		},
		{
			name: "expired timestamp (freeze)",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				f.clk.Add(25 * time.Hour)
			},
			wantIs:  []error{ErrExpired},
			wantMsg: "timestamp.json version",
		},
		{
			name: "bundle swapped for another release's",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				f2 := f.repo.targets.Targets["qemu-x86_64/2.0.0.pqb"]
				tf.over[TargetPath("qemu-x86_64/2.0.0.pqb", f2)] = []byte(f.rels["1.0.0"])
			},
			fetch:   "qemu-x86_64/2.0.0.pqb",
			wantIs:  []error{ErrTarget},
			wantMsg: "sha256 is",
		},
		{
			name: "bad ML-DSA signature",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				tf.over[TimestampFile] = resign(t, f.read(t, TimestampFile), editSig(func(s []byte) []byte { s[100] ^= 1; return s }))
			},
			wantIs:  []error{ErrThreshold, hybrid.ErrMLDSA},
			wantMsg: "0 of 1 required timestamp signatures valid",
		},
		{
			name: "missing ML-DSA signature (Ed25519 half only)",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				tf.over[TimestampFile] = resign(t, f.read(t, TimestampFile), editSig(func(s []byte) []byte { return s[pqLen:] }))
			},
			wantIs:  []error{ErrThreshold, hybrid.ErrSignatureLength},
			wantMsg: "is 64 bytes",
		},
		{
			name: "bad classical signature",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				tf.over[TimestampFile] = resign(t, f.read(t, TimestampFile), editSig(func(s []byte) []byte { s[pqLen+5] ^= 1; return s }))
			},
			wantIs:  []error{ErrThreshold, hybrid.ErrEd25519},
			wantMsg: "Ed25519 half",
		},
		{
			name: "missing classical signature (ML-DSA half only)",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				tf.over[TimestampFile] = resign(t, f.read(t, TimestampFile), editSig(func(s []byte) []byte { return s[:pqLen] }))
			},
			wantIs:  []error{ErrThreshold, hybrid.ErrSignatureLength},
			wantMsg: "is 3309 bytes",
		},
		{
			name: "no signatures",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				tf.over[TimestampFile] = resign(t, f.read(t, TimestampFile), func([]Signature) []Signature { return nil })
			},
			wantIs:  []error{ErrThreshold},
			wantMsg: "carries no signatures",
		},
		{
			name: "targets signed by a key that is not a targets key",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				evil := Signers{RoleTargets: f.signers[RoleTimestamp], RoleSnapshot: f.signers[RoleSnapshot], RoleTimestamp: f.signers[RoleTimestamp]}
				if err := f.repo.SetRollout("2.0.0", rollout.State{Phase: rollout.Running, Open: 5}, evil); err != nil {
					t.Fatal(err)
				}
			},
			wantIs:  []error{ErrThreshold},
			wantMsg: "is not a targets key of root version 1",
		},
		{
			name: "signed bytes changed after signing",
			attack: func(t *testing.T, f *fixture, tf *tamper, c *Client) {
				raw := f.read(t, TimestampFile)
				tf.over[TimestampFile] = bytes.Replace(raw, []byte(`"version":`), []byte(`"version": `), 1)
			},
			wantIs:  []error{ErrThreshold, hybrid.ErrMLDSA, hybrid.ErrEd25519},
			wantMsg: "0 of 1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			c, tf := f.client(t, nil)
			if err := c.Refresh(ctx); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			tc.attack(t, f, tf, c)
			var err error
			if tc.fetch != "" {
				if err = c.Refresh(ctx); err == nil {
					_, err = c.FetchTarget(ctx, tc.fetch)
				}
			} else {
				err = c.Refresh(ctx)
			}
			if err == nil {
				t.Fatal("attack accepted")
			}
			for _, want := range tc.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("error %q is not %v", err, want)
				}
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

func TestRootRotation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c, tf := f.client(t, nil)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Rotate the root and timestamp keys: version 2 signed by old and new.
	old := f.signers
	next := Signers{RoleRoot: {newKey(t)}, RoleTargets: old[RoleTargets], RoleSnapshot: old[RoleSnapshot], RoleTimestamp: {newKey(t)}}
	both := Signers{RoleRoot: append(append([]*hybrid.PrivateKey{}, old[RoleRoot]...), next[RoleRoot]...)}
	if err := f.repo.RotateRoot(roleConfig(next), both); err != nil {
		t.Fatal(err)
	}
	oldTimestamp := f.read(t, TimestampFile) // signed by the retired timestamp key
	if err := f.repo.SetRollout("2.0.0", rollout.State{Phase: rollout.Running, Open: 1}, next); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("refresh across rotation: %v", err)
	}
	if c.Root().Version != 2 {
		t.Fatalf("root version %d; want 2", c.Root().Version)
	}
	// The retired timestamp key no longer counts.
	tf.over[TimestampFile] = oldTimestamp
	if err := c.Refresh(ctx); !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), "is not a timestamp key of root version 2") {
		t.Errorf("old timestamp key after rotation: %v", err)
	}
	delete(tf.over, TimestampFile)

	// A version 3 signed only by the new root key (not by a threshold of
	// version 2's keys... which is the new key: so sign with the old one
	// instead, which version 2 no longer lists).
	if err := f.repo.RotateRoot(roleConfig(next), Signers{RoleRoot: old[RoleRoot]}); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), "3.root.json") {
		t.Errorf("root 3 signed by a retired root key: %v", err)
	}
	// A skipped version is not a rotation: 3.root.json claiming version 4,
	// signed by the right keys.
	os.Remove(filepath.Join(f.dir, "3.root.json"))
	root4, err := newRoot(4, roleConfig(next), t0.Add(DefaultExpiry.Root))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sign(root4, next[RoleRoot])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.dir, "3.root.json"), raw, 0o644)
	if err := c.Refresh(ctx); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "is 4; expected 3") {
		t.Errorf("root version 4 served as 3.root.json: %v", err)
	}
}

// TestRollbackSurvivesRestart: a device that restarts with its trusted
// metadata from its data partition still refuses older metadata.
func TestRollbackSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := DirStore(t.TempDir())
	oldTS := f.read(t, TimestampFile)
	f.repo.SetRollout("2.0.0", rollout.State{Phase: rollout.Running, Open: 1}, f.signers)
	c, _ := f.client(t, dir)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	c2, tf := f.client(t, dir)
	tf.over[TimestampFile] = oldTS
	if err := c2.Refresh(ctx); !errors.Is(err, ErrRollback) {
		t.Errorf("older timestamp after restart: %v", err)
	}
}

func TestRootRejectsClassicalOnlyKey(t *testing.T) {
	f := newFixture(t)
	var env Envelope
	json.Unmarshal(f.root1, &env)
	signed := strings.Replace(string(env.Signed), `"keytype":"mldsa65-ed25519"`, `"keytype":"ed25519"`, 1)
	env.Signed = json.RawMessage(signed)
	raw, _ := json.Marshal(env)
	_, err := NewClient(raw, ClientOptions{Fetcher: DirFetcher(f.dir)})
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "every role demands an ML-DSA and a classical signature") {
		t.Errorf("root with an ed25519 key: %v", err)
	}
}

func TestHTTPFetcher(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	srv := httptestServer(t, f.dir)
	hf := &HTTPFetcher{Base: srv}
	c, err := NewClient(f.root1, ClientOptions{Fetcher: hf, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	first := hf.Bytes.Load()
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ts := int64(len(f.read(t, TimestampFile)))
	// 2.root.json's 404 body is read too, and is small.
	if got := hf.Bytes.Load() - first; got < ts || got > ts+256 {
		t.Errorf("an idle check-in read %d bytes; want about timestamp.json's %d", got, ts)
	}
	if _, err := hf.Fetch(ctx, TimestampFile, 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized file: %v", err)
	}
}
