package hybrid

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode"
)

// privateKeyFile is the private key file's shape, for writing. Reading goes
// through decodeObject so every member is checked by name.
type privateKeyFile struct {
	Suite       Suite  `json:"suite"`
	ID          string `json:"id"`
	MLDSASeed   []byte `json:"mldsa_seed"`
	Ed25519Seed []byte `json:"ed25519_seed"`
	Dev         bool   `json:"dev"`
}

var privateKeyFields = []string{"suite", "id", "mldsa_seed", "ed25519_seed", "dev"}

// MarshalPrivateKey encodes k as a private key file. dev marks a
// development key: bundles it signs must say so (release.dev_key).
func MarshalPrivateKey(k *PrivateKey, dev bool) []byte {
	b, _ := json.MarshalIndent(privateKeyFile{ // plain fields: cannot fail
		Suite: k.suite, ID: k.pub.ID(), MLDSASeed: k.mldsaSeed, Ed25519Seed: k.edSeed, Dev: dev,
	}, "", "  ")
	return append(b, '\n')
}

// WritePrivateKey writes k to path atomically with mode 0600.
func WritePrivateKey(path string, k *PrivateKey, dev bool) error {
	return writeFileAtomic(path, MarshalPrivateKey(k, dev), 0o600)
}

// ReadPrivateKey reads a private key file. A file that group or others may
// read is refused, as ssh refuses such keys: the key may already be leaked.
func ReadPrivateKey(path string) (*PrivateKey, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("hybrid: private key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("hybrid: private key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, false, fmt.Errorf("%s: mode is %#o; expected 0600 (a signing key must not be readable by group or others)", path, perm)
	}
	const maxPrivateKeyFile = 64 << 10 // a real one is ~200 bytes
	b, err := io.ReadAll(io.LimitReader(f, maxPrivateKeyFile+1))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxPrivateKeyFile {
		return nil, false, fmt.Errorf("%s: larger than %d bytes; expected a private key file", path, maxPrivateKeyFile)
	}
	return ParsePrivateKey(path, b)
}

// ParsePrivateKey decodes and validates a private key file; name is used in
// errors. It returns the key and whether it is a development key. The id
// must be the id of the key the seeds expand to.
func ParsePrivateKey(name string, b []byte) (*PrivateKey, bool, error) {
	o, err := decodeObject(name, "", b, privateKeyFields...)
	if err != nil {
		return nil, false, err
	}
	s, err := o.string("suite")
	if err != nil {
		return nil, false, err
	}
	sp, err := Suite(s).params()
	if err != nil {
		return nil, false, o.errorf("suite", "%v", err)
	}
	id, err := o.string("id")
	if err != nil {
		return nil, false, err
	}
	pqSeed, err := o.bytes("mldsa_seed", sp.pq.seedSize, sp.pq.name+" seed")
	if err != nil {
		return nil, false, err
	}
	edSeed, err := o.bytes("ed25519_seed", sp.trad.seedSize, sp.trad.name+" seed")
	if err != nil {
		return nil, false, err
	}
	dev, err := o.bool("dev")
	if err != nil {
		return nil, false, err
	}
	k, err := NewKeyFromSeeds(Suite(s), pqSeed, edSeed)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", name, err)
	}
	if got := k.pub.ID(); got != id {
		return nil, false, o.errorf("id", "is %q; expected %q, the id of the key the seeds expand to", id, got)
	}
	return k, dev, nil
}

// TrustedKey is a public key an image trusts, with its name for logs.
type TrustedKey struct {
	PublicKey
	Name string
	Dev  bool // a development key: only dev releases may carry its signature
}

// Keyring is the set of keys an image trusts.
type Keyring struct {
	Keys []TrustedKey
}

type keyringFile struct {
	Keys []keyJSON `json:"keys"`
}

type keyJSON struct {
	Suite   Suite  `json:"suite"`
	ID      string `json:"id"`
	MLDSA   []byte `json:"mldsa"`
	Ed25519 []byte `json:"ed25519"`
	Dev     bool   `json:"dev"`
	Name    string `json:"name"`
}

var (
	keyringFields = []string{"keys"}
	keyFields     = []string{"suite", "id", "mldsa", "ed25519", "dev", "name"}
)

// Marshal encodes the keyring as a keyring file.
func (r Keyring) Marshal() []byte {
	f := keyringFile{Keys: []keyJSON{}}
	for _, k := range r.Keys {
		f.Keys = append(f.Keys, keyJSON{Suite: k.Suite, ID: k.ID(), MLDSA: k.MLDSA, Ed25519: k.Ed25519, Dev: k.Dev, Name: k.Name})
	}
	b, _ := json.MarshalIndent(f, "", "  ") // plain fields: cannot fail
	return append(b, '\n')
}

// WriteKeyring writes a keyring file atomically with mode 0644.
func WriteKeyring(path string, r Keyring) error {
	return writeFileAtomic(path, r.Marshal(), 0o644)
}

// ReadKeyring reads and validates a keyring file.
func ReadKeyring(path string) (Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Keyring{}, fmt.Errorf("hybrid: keyring: %w", err)
	}
	return ParseKeyring(path, b)
}

// ParseKeyring decodes and validates a keyring file; name is used in
// errors. A keyring must hold at least one key, every id must match its
// key, and no id may appear twice.
func ParseKeyring(name string, b []byte) (Keyring, error) {
	top, err := decodeObject(name, "", b, keyringFields...)
	if err != nil {
		return Keyring{}, err
	}
	entries, err := top.array("keys")
	if err != nil {
		return Keyring{}, err
	}
	if len(entries) == 0 {
		return Keyring{}, top.errorf("keys", "empty; expected at least one key")
	}
	var r Keyring
	seen := map[string]int{}
	for i, raw := range entries {
		k, err := parseTrustedKey(name, fmt.Sprintf("keys[%d]", i), raw)
		if err != nil {
			return Keyring{}, err
		}
		if j, dup := seen[k.ID()]; dup {
			return Keyring{}, fmt.Errorf("%s: field \"keys[%d].id\": %s is also keys[%d]; expected each key once", name, i, k.ID(), j)
		}
		seen[k.ID()] = i
		r.Keys = append(r.Keys, k)
	}
	return r, nil
}

func parseTrustedKey(file, path string, raw []byte) (TrustedKey, error) {
	o, err := decodeObject(file, path, raw, keyFields...)
	if err != nil {
		return TrustedKey{}, err
	}
	s, err := o.string("suite")
	if err != nil {
		return TrustedKey{}, err
	}
	sp, err := Suite(s).params()
	if err != nil {
		return TrustedKey{}, o.errorf("suite", "%v", err)
	}
	id, err := o.string("id")
	if err != nil {
		return TrustedKey{}, err
	}
	var k TrustedKey
	k.Suite = Suite(s)
	if k.MLDSA, err = o.bytes("mldsa", sp.pq.pubSize, sp.pq.name+" public key"); err != nil {
		return TrustedKey{}, err
	}
	if k.Ed25519, err = o.bytes("ed25519", sp.trad.pubSize, sp.trad.name+" public key"); err != nil {
		return TrustedKey{}, err
	}
	if k.Dev, err = o.bool("dev"); err != nil {
		return TrustedKey{}, err
	}
	if k.Name, err = o.string("name"); err != nil {
		return TrustedKey{}, err
	}
	if err := checkName(k.Name); err != nil {
		return TrustedKey{}, o.errorf("name", "is %q; %v", k.Name, err)
	}
	if got := k.ID(); got != id {
		return TrustedKey{}, o.errorf("id", "is %q; expected %q, the id of this key", id, got)
	}
	return k, nil
}

// checkName keeps key names printable and short: they go into logs.
func checkName(n string) error {
	if n == "" || len(n) > 128 {
		return fmt.Errorf("expected 1 to 128 bytes")
	}
	for _, c := range n {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("expected printable characters only")
		}
	}
	return nil
}

// Lookup returns the trusted key with the given id.
func (r Keyring) Lookup(id string) (TrustedKey, bool) {
	for _, k := range r.Keys {
		if k.ID() == id {
			return k, true
		}
	}
	return TrustedKey{}, false
}

// Verify checks sig over msg with the trusted key keyID and returns it.
func (r Keyring) Verify(keyID string, msg, sig []byte) (TrustedKey, error) {
	k, ok := r.Lookup(keyID)
	if !ok {
		ids := make([]string, len(r.Keys))
		for i, k := range r.Keys {
			ids[i] = k.ID()
		}
		return TrustedKey{}, fmt.Errorf("hybrid: %w %q; the keyring holds %q", ErrUnknownKey, keyID, ids)
	}
	if err := k.PublicKey.Verify(msg, sig); err != nil {
		return TrustedKey{}, fmt.Errorf("key %q (%s): %w", k.Name, keyID, err)
	}
	return k, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, written, synced, renamed over path, and the directory synced,
// so a crash leaves the old file or the new one, never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("hybrid: writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("hybrid: writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("hybrid: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("hybrid: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("hybrid: writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("hybrid: writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("hybrid: writing %s: syncing directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("hybrid: writing %s: syncing directory: %w", path, err)
	}
	return nil
}
