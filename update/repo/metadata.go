package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// Role names one of the four top-level roles.
type Role string

const (
	RoleRoot      Role = "root"
	RoleTargets   Role = "targets"
	RoleSnapshot  Role = "snapshot"
	RoleTimestamp Role = "timestamp"
)

// Roles lists the top-level roles in the order a client verifies them.
var Roles = []Role{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets}

// SpecVersion is the TUF specification whose metadata shape we follow.
const SpecVersion = "1.0.31"

// Errors, for errors.Is. Each is wrapped with the file, the field and what
// was expected.
var (
	ErrFormat      = errors.New("malformed metadata")
	ErrThreshold   = errors.New("not enough valid hybrid signatures")
	ErrRollback    = errors.New("rollback: older than the trusted metadata")
	ErrExpired     = errors.New("expired (freeze attack or stale repository)")
	ErrMixAndMatch = errors.New("does not match the version and hashes its parent role lists")
	ErrTarget      = errors.New("target does not match the targets metadata")
	ErrNotFound    = errors.New("not found in the repository")
	ErrTooLarge    = errors.New("larger than allowed")
	ErrUnknown     = errors.New("unknown target")
)

// Size limits for metadata a client downloads before it has any length from
// a parent role (root and timestamp), and for the others as a backstop.
const (
	MaxRootSize      = 1 << 20
	MaxTimestampSize = 64 << 10
	MaxSnapshotSize  = 1 << 20
	MaxTargetsSize   = 16 << 20
)

// HexBytes reads and writes as lower-case hex, as TUF's signatures and
// hashes do.
type HexBytes []byte

func (h HexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *HexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("expected hex: %w", err)
	}
	*h = v
	return nil
}

// Envelope is a metadata file: the signed bytes exactly as signed, and the
// signatures over them. Signatures are over the raw bytes of "signed" as
// they appear in the file, so no canonical JSON is needed to verify.
type Envelope struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []Signature     `json:"signatures"`
}

// Signature is one composite signature by one key.
type Signature struct {
	KeyID string   `json:"keyid"`
	Sig   HexBytes `json:"sig"`
}

// Common is the header of every role's signed part.
type Common struct {
	Type        Role      `json:"_type"`
	SpecVersion string    `json:"spec_version"`
	Version     int64     `json:"version"`
	Expires     time.Time `json:"expires"`
}

func (m Common) header() Common { return m }

// Root lists the keys and, per role, which keys and how many of them must
// sign.
type Root struct {
	Common
	ConsistentSnapshot bool              `json:"consistent_snapshot"`
	Keys               map[string]Key    `json:"keys"`
	Roles              map[Role]RoleKeys `json:"roles"`
}

// Key is a composite public key. keytype is the hybrid suite; there is no
// classical-only or PQ-only key type, so every threshold counts only keys
// whose signatures are valid under both algorithms.
type Key struct {
	Type   hybrid.Suite `json:"keytype"`
	Scheme string       `json:"scheme"` // the suite's composite label
	Value  KeyValue     `json:"keyval"`
}

// KeyValue holds the two raw public keys.
type KeyValue struct {
	MLDSA   HexBytes `json:"mldsa"`
	Ed25519 HexBytes `json:"ed25519"`
}

// RoleKeys is a role's key ids and threshold.
type RoleKeys struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

// Public returns the hybrid public key.
func (k Key) Public() hybrid.PublicKey {
	return hybrid.PublicKey{Suite: k.Type, MLDSA: k.Value.MLDSA, Ed25519: k.Value.Ed25519}
}

// KeyOf is the root's entry for a hybrid public key.
func KeyOf(p hybrid.PublicKey) (Key, error) {
	label, err := p.Suite.Label()
	if err != nil {
		return Key{}, err
	}
	return Key{Type: p.Suite, Scheme: label, Value: KeyValue{MLDSA: p.MLDSA, Ed25519: p.Ed25519}}, nil
}

// MetaFile is what a parent role records of a child file.
type MetaFile struct {
	Version int64  `json:"version"`
	Length  int64  `json:"length"`
	Hashes  Hashes `json:"hashes"`
}

// Hashes holds the SHA-256 of a file (TUF's hashes object, one algorithm).
type Hashes struct {
	SHA256 HexBytes `json:"sha256"`
}

// Snapshot lists the version (and hash) of the targets metadata.
type Snapshot struct {
	Common
	Meta map[string]MetaFile `json:"meta"`
}

// Timestamp lists the version (and hash) of the snapshot metadata. It
// expires soon, so a client notices when it is fed an old repository.
type Timestamp struct {
	Common
	Meta map[string]MetaFile `json:"meta"`
}

// Targets lists the bundles and each release's rollout plan and state.
type Targets struct {
	Common
	Targets map[string]TargetFile `json:"targets"`
	Custom  TargetsCustom         `json:"custom"`
}

// TargetsCustom is repository-wide rollout policy.
type TargetsCustom struct {
	// Pins maps a device group to the version its devices should run.
	Pins map[string]string `json:"pins,omitempty"`
}

// TargetFile is one bundle.
type TargetFile struct {
	Length int64        `json:"length"`
	Hashes Hashes       `json:"hashes"`
	Custom TargetCustom `json:"custom"`
}

// TargetCustom is the release a bundle carries and its rollout.
type TargetCustom struct {
	Release release.Release `json:"release"`
	Plan    rollout.Plan    `json:"plan"`
	Rollout rollout.State   `json:"rollout"`
}

// File names. Snapshot and targets are written under their version
// (consistent snapshots) so a client never reads a half-published set;
// timestamp.json is the one mutable name.
func RootFile(version int64) string     { return fmt.Sprintf("%d.root.json", version) }
func SnapshotFile(version int64) string { return fmt.Sprintf("%d.snapshot.json", version) }
func TargetsFile(version int64) string  { return fmt.Sprintf("%d.targets.json", version) }

const TimestampFile = "timestamp.json"

// TargetPath is where a target's bytes are stored: under targets/, with the
// hash in the file name so a CDN never serves a stale copy under a name the
// metadata lists with another hash.
func TargetPath(name string, f TargetFile) string {
	dir, base := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		dir, base = name[:i+1], name[i+1:]
	}
	return "targets/" + dir + hex.EncodeToString(f.Hashes.SHA256) + "." + base
}

// Candidates is the rollout's view of the targets: one candidate per bundle.
func (t *Targets) Candidates() []rollout.Candidate {
	names := make([]string, 0, len(t.Targets))
	for n := range t.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]rollout.Candidate, 0, len(names))
	for _, n := range names {
		f := t.Targets[n]
		out = append(out, rollout.Candidate{Target: n, Version: f.Custom.Release.Version, Board: f.Custom.Release.Board,
			Epoch: f.Custom.Release.Epoch, Plan: f.Custom.Plan, State: f.Custom.Rollout})
	}
	return out
}

// Release finds the target of a release version.
func (t *Targets) Release(version string) (string, TargetFile, error) {
	var found []string
	for n, f := range t.Targets {
		if f.Custom.Release.Version == version {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return "", TargetFile{}, fmt.Errorf("release %s: %w", version, ErrUnknown)
	case 1:
		return found[0], t.Targets[found[0]], nil
	}
	slices.Sort(found)
	return "", TargetFile{}, fmt.Errorf("release %s: listed by several targets (%s); name the target", version, strings.Join(found, ", "))
}

// decodeStrict parses JSON rejecting unknown fields and trailing data.
func decodeStrict(name string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w: %v", name, ErrFormat, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: %w: data after the JSON object", name, ErrFormat)
	}
	return nil
}

// parseEnvelope splits a metadata file into its signed bytes and signatures.
func parseEnvelope(name string, data []byte) (Envelope, error) {
	var e Envelope
	if err := decodeStrict(name, data, &e); err != nil {
		return e, err
	}
	if len(e.Signed) == 0 || e.Signed[0] != '{' {
		return e, fmt.Errorf("%s: field \"signed\": %w: expected an object", name, ErrFormat)
	}
	return e, nil
}

// checkCommon checks the header against the role the file should be.
func checkCommon(name string, c Common, role Role) error {
	switch {
	case c.Type != role:
		return fmt.Errorf("%s: field \"signed._type\": %w: is %q; expected %q", name, ErrFormat, c.Type, role)
	case c.Version < 1:
		return fmt.Errorf("%s: field \"signed.version\": %w: is %d; expected at least 1", name, ErrFormat, c.Version)
	case c.Expires.IsZero():
		return fmt.Errorf("%s: field \"signed.expires\": %w: missing", name, ErrFormat)
	case c.SpecVersion == "":
		return fmt.Errorf("%s: field \"signed.spec_version\": %w: missing", name, ErrFormat)
	}
	return nil
}

// checkRoot checks a root's keys and roles: every key a known hybrid suite
// whose id matches its bytes, every role present with a satisfiable
// threshold.
func checkRoot(name string, r *Root) error {
	if err := checkCommon(name, r.Common, RoleRoot); err != nil {
		return err
	}
	for id, k := range r.Keys {
		label, err := k.Type.Label()
		if err != nil {
			return fmt.Errorf("%s: field \"signed.keys.%s.keytype\": %w: is %q; expected a hybrid suite (%v): every role demands an ML-DSA and a classical signature",
				name, id, ErrFormat, k.Type, hybrid.Suites())
		}
		if k.Scheme != label {
			return fmt.Errorf("%s: field \"signed.keys.%s.scheme\": %w: is %q; expected %q", name, id, ErrFormat, k.Scheme, label)
		}
		if got := k.Public().ID(); got != id {
			return fmt.Errorf("%s: field \"signed.keys.%s\": %w: the key's id is %s", name, id, ErrFormat, got)
		}
	}
	for _, role := range Roles {
		rk, ok := r.Roles[role]
		if !ok {
			return fmt.Errorf("%s: field \"signed.roles.%s\": %w: missing", name, role, ErrFormat)
		}
		if rk.Threshold < 1 || rk.Threshold > len(rk.KeyIDs) {
			return fmt.Errorf("%s: field \"signed.roles.%s.threshold\": %w: is %d; expected 1..%d (its key count)", name, role, ErrFormat, rk.Threshold, len(rk.KeyIDs))
		}
		for _, id := range rk.KeyIDs {
			if _, ok := r.Keys[id]; !ok {
				return fmt.Errorf("%s: field \"signed.roles.%s.keyids\": %w: key %s is not in \"keys\"", name, role, ErrFormat, id)
			}
		}
	}
	if len(r.Roles) != len(Roles) {
		return fmt.Errorf("%s: field \"signed.roles\": %w: has %d roles; expected exactly %v", name, ErrFormat, len(r.Roles), Roles)
	}
	return nil
}

// verifyRole checks that env carries at least the role's threshold of
// valid composite signatures from distinct keys of the role. A signature
// counts only when both its ML-DSA and its Ed25519 halves verify.
func verifyRole(name string, env Envelope, root *Root, role Role) error {
	rk := root.Roles[role]
	valid := map[string]bool{}
	var errs []error
	for _, s := range env.Signatures {
		if !slices.Contains(rk.KeyIDs, s.KeyID) {
			errs = append(errs, fmt.Errorf("key %s is not a %s key of root version %d", s.KeyID, role, root.Version))
			continue
		}
		if valid[s.KeyID] {
			continue
		}
		if err := root.Keys[s.KeyID].Public().Verify(env.Signed, s.Sig); err != nil {
			errs = append(errs, err)
			continue
		}
		valid[s.KeyID] = true
	}
	if len(valid) >= rk.Threshold {
		return nil
	}
	if len(env.Signatures) == 0 {
		errs = append(errs, errors.New("the file carries no signatures"))
	}
	return fmt.Errorf("%s: %w: %d of %d required %s signatures valid (root version %d): %w",
		name, ErrThreshold, len(valid), rk.Threshold, role, root.Version, errors.Join(errs...))
}

// sign builds a metadata file: v marshalled as the signed part, signed by
// every key.
func sign(v any, keys []*hybrid.PrivateKey) ([]byte, error) {
	signed, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	env := Envelope{Signed: signed, Signatures: []Signature{}}
	for _, k := range keys {
		sig, err := k.Sign(signed)
		if err != nil {
			return nil, err
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: k.Public().ID(), Sig: sig})
	}
	// Written by hand, not with json.Marshal(env): the encoder would
	// re-format "signed", and the signatures are over its exact bytes.
	sigs, err := json.Marshal(env.Signatures)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(signed)+len(sigs)+40)
	out = append(out, "{\"signed\":"...)
	out = append(out, signed...)
	out = append(out, ",\n \"signatures\":"...)
	out = append(out, sigs...)
	return append(out, "}\n"...), nil
}

// metaFileOf records a file for its parent role.
func metaFileOf(version int64, data []byte) MetaFile {
	h := sha256.Sum256(data)
	return MetaFile{Version: version, Length: int64(len(data)), Hashes: Hashes{SHA256: h[:]}}
}

// checkMetaFile checks downloaded bytes against the parent's record.
func checkMetaFile(name string, data []byte, want MetaFile, parent string) error {
	if int64(len(data)) != want.Length {
		return fmt.Errorf("%s: %w: is %d bytes; %s lists %d", name, ErrMixAndMatch, len(data), parent, want.Length)
	}
	if h := sha256.Sum256(data); !bytes.Equal(h[:], want.Hashes.SHA256) {
		return fmt.Errorf("%s: %w: sha256 is %x; %s lists %x", name, ErrMixAndMatch, h, parent, []byte(want.Hashes.SHA256))
	}
	return nil
}
