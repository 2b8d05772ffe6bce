package repo

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// Codec tests in the manner of crypto/tls's handshake_messages_test.go:
// random metadata of every role survives sign → parse unchanged, every
// truncation of a signed file is refused, and the parsers never panic on
// fuzzed bytes.

func randBytes(r *rand.Rand, n int) HexBytes {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randString(r *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789.-+_/ \"\\é\u2028"
	rs := []rune(chars)
	n := 1 + r.IntN(12)
	var sb strings.Builder
	for range n {
		sb.WriteRune(rs[r.IntN(len(rs))])
	}
	return sb.String()
}

func randTime(r *rand.Rand) time.Time {
	return time.Unix(r.Int64N(4e9), 0).UTC()
}

func randCommon(r *rand.Rand, role Role) Common {
	return Common{Type: role, SpecVersion: SpecVersion, Version: 1 + r.Int64N(1<<40), Expires: randTime(r)}
}

func randMetaFile(r *rand.Rand) MetaFile {
	return MetaFile{Version: 1 + r.Int64N(1<<40), Length: r.Int64N(1 << 30), Hashes: Hashes{SHA256: randBytes(r, 32)}}
}

func randRoot(r *rand.Rand) *Root {
	root := &Root{Common: randCommon(r, RoleRoot), ConsistentSnapshot: r.IntN(2) == 0, Keys: map[string]Key{}, Roles: map[Role]RoleKeys{}}
	var ids []string
	for range 1 + r.IntN(4) {
		id := fmt.Sprintf("%x", randBytes(r, 8))
		root.Keys[id] = Key{Type: hybrid.MLDSA65Ed25519, Scheme: randString(r),
			Value: KeyValue{MLDSA: randBytes(r, 1+r.IntN(64)), Ed25519: randBytes(r, 32)}}
		ids = append(ids, id)
	}
	for _, role := range Roles {
		root.Roles[role] = RoleKeys{KeyIDs: ids[:1+r.IntN(len(ids))], Threshold: 1 + r.IntN(3)}
	}
	return root
}

func randPlan(r *rand.Rand) rollout.Plan {
	var p rollout.Plan
	for i := range 1 + r.IntN(4) {
		w := rollout.Wave{Name: randString(r), Soak: rollout.Duration(time.Duration(r.Int64N(1e6)) * time.Second),
			MaxFailure: r.Float64(), MinSuccess: r.Float64()}
		if i == 0 && r.IntN(2) == 0 {
			w.Devices = []string{randString(r), randString(r)}
		} else {
			w.Percent = float64(1+r.IntN(10000)) / 100
		}
		p.Waves = append(p.Waves, w)
	}
	return p
}

func randTargets(r *rand.Rand) *Targets {
	t := &Targets{Common: randCommon(r, RoleTargets), Targets: map[string]TargetFile{}}
	for range r.IntN(4) {
		st := rollout.State{Phase: rollout.Phase(r.IntN(6)), Open: r.IntN(5), Reason: randString(r)}
		if r.IntN(2) == 0 {
			st.OpenedAt = randTime(r)
		}
		rel := release.Release{Version: randString(r), Board: randString(r), Profile: release.Prod, Kernel: randString(r),
			BuildID: fmt.Sprintf("%x", randBytes(r, 32)), SecurityVersion: r.Uint64(), Epoch: r.Int64(), DevKey: r.IntN(2) == 0}
		t.Targets[randString(r)] = TargetFile{Length: r.Int64N(1 << 40), Hashes: Hashes{SHA256: randBytes(r, 32)},
			Custom: TargetCustom{Release: rel, Plan: randPlan(r), Rollout: st}}
	}
	if r.IntN(2) == 0 {
		t.Custom.Pins = map[string]string{randString(r): randString(r)}
	}
	return t
}

// randRole returns a random signed part of one role, and a pointer to a
// zero value of its type to parse into.
func randRole(r *rand.Rand) (v, zero any) {
	switch r.IntN(4) {
	case 0:
		return randRoot(r), &Root{}
	case 1:
		return randTargets(r), &Targets{}
	case 2:
		return &Snapshot{Common: randCommon(r, RoleSnapshot), Meta: map[string]MetaFile{"targets.json": randMetaFile(r)}}, &Snapshot{}
	default:
		return &Timestamp{Common: randCommon(r, RoleTimestamp), Meta: map[string]MetaFile{"snapshot.json": randMetaFile(r)}}, &Timestamp{}
	}
}

// TestMetadataRoundTrip: random metadata of every role, signed, parses
// back to the same value, and its signatures verify over the bytes the
// file carries.
func TestMetadataRoundTrip(t *testing.T) {
	key := newKey(t)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		v, zero := randRole(r)
		raw, err := sign(v, []*hybrid.PrivateKey{key})
		if err != nil {
			t.Fatalf("#%d: sign: %v", i, err)
		}
		env, err := parseEnvelope("random.json", raw)
		if err != nil {
			t.Fatalf("#%d: %v\n%s", i, err, raw)
		}
		if err := decodeStrict("random.json", env.Signed, zero); err != nil {
			t.Fatalf("#%d: %v\n%s", i, err, raw)
		}
		if !reflect.DeepEqual(zero, v) {
			t.Fatalf("#%d: round trip changed the value:\n got %+v\nwant %+v", i, zero, v)
		}
		if len(env.Signatures) != 1 || env.Signatures[0].KeyID != key.Public().ID() {
			t.Fatalf("#%d: signatures %+v", i, env.Signatures)
		}
		if err := key.Public().Verify(env.Signed, env.Signatures[0].Sig); err != nil {
			t.Fatalf("#%d: signature over the file's signed bytes: %v", i, err)
		}
	}
}

// seedRepo is a small repository: its files seed the fuzzer and the
// truncation test.
func seedRepo(tb testing.TB) (dir string, root []byte, now time.Time) {
	tb.Helper()
	dir = tb.TempDir()
	now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := Signers{}
	for _, role := range Roles {
		s[role] = []*hybrid.PrivateKey{newKey(tb)}
	}
	rp, err := Init(dir, roleConfig(s), s, func() time.Time { return now }, DefaultExpiry)
	if err != nil {
		tb.Fatal(err)
	}
	bundle := filepath.Join(tb.TempDir(), "b.pqb")
	if err := os.WriteFile(bundle, []byte("bundle bytes"), 0o644); err != nil {
		tb.Fatal(err)
	}
	rel := release.Release{Version: "1.0.0", Board: "qemu-x86_64", Profile: release.Prod, Epoch: 1}
	if _, err := rp.AddBundle(bundle, rel, rollout.DefaultPlan([]string{"dev-1"}, time.Hour), s); err != nil {
		tb.Fatal(err)
	}
	if root, err = os.ReadFile(filepath.Join(dir, RootFile(1))); err != nil {
		tb.Fatal(err)
	}
	return dir, root, now
}

// verifiers are the client's parsers of untrusted metadata, per file.
func verifiers(c *Client) map[string]func(raw []byte) error {
	return map[string]func(raw []byte) error{
		RootFile(1):   func(raw []byte) error { _, err := parseSelfSignedRoot("root", raw); return err },
		TimestampFile: func(raw []byte) error { _, err := c.verifyTimestamp("timestamp", raw); return err },
		SnapshotFile(2): func(raw []byte) error {
			_, err := c.verifySnapshot("snapshot", raw)
			return err
		},
		TargetsFile(2): func(raw []byte) error { _, err := c.verifyTargets("targets", raw); return err },
	}
}

// TestMetadataTruncated: every truncation of every signed file is refused
// (the file's last newline aside, which JSON does not need).
func TestMetadataTruncated(t *testing.T) {
	dir, root, now := seedRepo(t)
	c, err := NewClient(root, ClientOptions{Fetcher: DirFetcher(dir), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for name, verify := range verifiers(c) {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(raw); err != nil {
			t.Fatalf("%s: the whole file: %v", name, err)
		}
		whole := len(bytes.TrimRight(raw, "\n"))
		for i := range whole {
			if err := verify(raw[:i]); err == nil {
				t.Fatalf("%s: truncated to %d of %d bytes: accepted", name, i, len(raw))
			}
		}
	}
}

// FuzzMetadata feeds every metadata parser fuzzed bytes, seeded with a real
// repository's files. None may panic; a timestamp, snapshot or targets file
// they accept must be one the repository signed, and whatever parses as
// a role's signed part must survive re-encoding unchanged.
func FuzzMetadata(f *testing.F) {
	dir, root, now := seedRepo(f)
	c, err := NewClient(root, ClientOptions{Fetcher: DirFetcher(dir), Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	genuine := map[string]bool{}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			genuine[string(b)] = true
			f.Add(b)
		}
	}
	f.Add([]byte(`{"signed":{},"signatures":[]}`))
	f.Add([]byte(`{"signed":{"_type":"root"},"signatures":[{"keyid":"00","sig":"zz"}]}`))
	f.Add([]byte(`{"signed":[],"signatures":null}`))
	vs := verifiers(c)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for name, verify := range vs {
			// A root is self-signed: one from any keys verifies (the
			// fuzzing workers each make their own repository), so only the
			// other roles, checked under the trusted root, must refuse.
			if err := verify(raw); err == nil && name != RootFile(1) && !genuine[string(raw)] {
				t.Fatalf("%s: accepted a file the repository never signed:\n%q", name, raw)
			}
		}
		env, err := parseEnvelope("fuzz", raw)
		if err != nil {
			return
		}
		for _, zero := range []func() any{func() any { return &Root{} }, func() any { return &Targets{} },
			func() any { return &Snapshot{} }, func() any { return &Timestamp{} }} {
			v := zero()
			if decodeStrict("fuzz", env.Signed, v) != nil {
				continue
			}
			again, err := sign(v, nil)
			if err != nil {
				continue // e.g. a phase number with no name: it cannot have come from a signer either
			}
			e2, err := parseEnvelope("again", again)
			if err != nil {
				t.Fatalf("re-encoded %T does not parse: %v\n%s", v, err, again)
			}
			w := zero()
			if err := decodeStrict("again", e2.Signed, w); err != nil {
				t.Fatalf("re-encoded %T does not decode: %v\n%s", v, err, again)
			}
			if !reflect.DeepEqual(v, w) {
				t.Fatalf("%T changed on re-encoding:\n%+v\n%+v", v, v, w)
			}
		}
	})
}
