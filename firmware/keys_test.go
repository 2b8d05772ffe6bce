package firmware

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pqbranch/pqbranch/update/hybrid"
)

// TestSignerTrustAndRotation: without a key the build makes and reuses a
// development key in the cache; with a release key and -trust files the
// image trusts the signing key plus the new ones (key rotation); keygen
// never overwrites a key.
func TestSignerTrustAndRotation(t *testing.T) {
	cache := t.TempDir()
	dev, err := loadSigner("", cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !dev.dev || len(dev.ring.Keys) != 1 || !dev.ring.Keys[0].Dev {
		t.Fatalf("development signer: dev %v, ring %+v", dev.dev, dev.ring)
	}
	again, err := loadSigner("", cache, nil)
	if err != nil || again.key.Public().ID() != dev.key.Public().ID() {
		t.Fatalf("the development key was not reused: %v", err)
	}

	dir := t.TempDir()
	oldKey, oldPub := filepath.Join(dir, "old.key"), filepath.Join(dir, "old.pub")
	newKey, newPub := filepath.Join(dir, "new.key"), filepath.Join(dir, "new.pub")
	oldID, err := Keygen(oldKey, oldPub, "release 2026")
	if err != nil {
		t.Fatal(err)
	}
	newID, err := Keygen(newKey, newPub, "release 2027")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Keygen(oldKey, filepath.Join(dir, "x.pub"), "again"); err == nil {
		t.Fatal("keygen overwrote a key")
	}
	if st, err := os.Stat(oldKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st, err)
	}
	// Release N: signed by the old key, trusting the new one as well.
	s, err := loadSigner(oldKey, cache, []string{newPub, oldPub})
	if err != nil {
		t.Fatal(err)
	}
	if s.dev || s.key.Public().ID() != oldID.ID() {
		t.Fatalf("signer is %s (dev %v); want the old release key", s.key.Public().ID(), s.dev)
	}
	var ids []string
	for _, k := range s.ring.Keys {
		ids = append(ids, k.ID())
	}
	if len(ids) != 2 || ids[0] != oldID.ID() || ids[1] != newID.ID() {
		t.Fatalf("image trusts %v; want the signing key then the new key, once each", ids)
	}
	// Release N+1, signed by the new key, verifies against what N trusts.
	nk, _, err := hybrid.ReadPrivateKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("release N+1")
	sig, err := nk.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ring.Verify(newID.ID(), msg, sig); err != nil {
		t.Fatalf("release N does not accept release N+1's key: %v", err)
	}
	if _, err := dev.ring.Verify(newID.ID(), msg, sig); err == nil {
		t.Fatal("an image that never trusted the new key accepted it")
	}
}
