package firmware

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pqbranch/pqbranch/update/hybrid"
)

// DevKeyPath is where local builds keep their development signing key: in
// the build cache, never in the source tree, so it is never shipped as a
// release key by accident. Bundles signed with it say so in their manifest,
// and the appliance shows it in status.
func DevKeyPath(cache string) string {
	return filepath.Join(cache, "keys", "dev-update.key")
}

// Keygen writes a new hybrid signing key to keyPath (mode 0600) and its
// public keyring to pubPath, refusing to overwrite either.
func Keygen(keyPath, pubPath, name string) (hybrid.PublicKey, error) {
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return hybrid.PublicKey{}, fmt.Errorf("%s exists; refusing to overwrite a key", p)
		}
	}
	k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	if err != nil {
		return hybrid.PublicKey{}, err
	}
	if err := hybrid.WritePrivateKey(keyPath, k, false); err != nil {
		return hybrid.PublicKey{}, err
	}
	ring := hybrid.Keyring{Keys: []hybrid.TrustedKey{{PublicKey: k.Public(), Name: name}}}
	if err := writeFileAtomic(pubPath, ring.Marshal(), 0o644); err != nil {
		return hybrid.PublicKey{}, err
	}
	return k.Public(), nil
}

// signer is the key that signs a build's bundle and the keyring its image
// trusts.
type signer struct {
	key  *hybrid.PrivateKey
	dev  bool
	ring hybrid.Keyring
}

// loadSigner reads the release key at keyPath, or creates and uses the
// development key in the cache when keyPath is empty. The image trusts the
// signing key plus every key in the trust files: a newer image that trusts
// a new key, while signed by the old one, is how keys rotate.
func loadSigner(keyPath, cache string, trust []string) (*signer, error) {
	s := &signer{}
	if keyPath == "" {
		keyPath = DevKeyPath(cache)
		if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
			k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
			if err != nil {
				return nil, err
			}
			if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
				return nil, err
			}
			if err := hybrid.WritePrivateKey(keyPath, k, true); err != nil {
				return nil, err
			}
		}
	}
	var err error
	if s.key, s.dev, err = hybrid.ReadPrivateKey(keyPath); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	name := "release key " + filepath.Base(keyPath)
	if s.dev {
		name = "development key " + keyPath
	}
	s.ring.Keys = append(s.ring.Keys, hybrid.TrustedKey{PublicKey: s.key.Public(), Name: name, Dev: s.dev})
	seen := map[string]bool{s.key.Public().ID(): true}
	for _, f := range trust {
		r, err := hybrid.ReadKeyring(f)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
		for _, k := range r.Keys {
			if !seen[k.ID()] {
				seen[k.ID()] = true
				s.ring.Keys = append(s.ring.Keys, k)
			}
		}
	}
	return s, nil
}

// writeFileAtomic writes data beside path and renames it into place, so a
// reader sees the old file or the new one, never half of one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
