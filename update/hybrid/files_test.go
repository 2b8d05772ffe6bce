package hybrid

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivateKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	for _, dev := range []bool{true, false} { // the second write replaces the first
		k := testKey(t, 5)
		if err := WritePrivateKey(path, k, dev); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %#o; want 0600", st.Mode().Perm())
		}
		got, gotDev, err := ReadPrivateKey(path)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Public().Equal(k.Public()) || gotDev != dev {
			t.Errorf("read back key %s dev=%v; want %s dev=%v", got.Public().ID(), gotDev, k.Public().ID(), dev)
		}
		// The key read back signs what the original verifies.
		sig, err := got.Sign([]byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().Verify([]byte("m"), sig); err != nil {
			t.Error(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries; want only the key (no temporary files left)", len(entries))
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("ReadPrivateKey(mode 0640) = %v; want a mode error", err)
	}
}

func TestKeyringFileRoundTrip(t *testing.T) {
	ring := Keyring{Keys: []TrustedKey{
		{PublicKey: testKey(t, 1).Public(), Name: "release 2026 (HSM)"},
		{PublicKey: testKey(t, 2).Public(), Name: "dev", Dev: true},
	}}
	path := filepath.Join(t.TempDir(), "update-keys.json")
	if err := WriteKeyring(path, ring); err != nil {
		t.Fatal(err)
	}
	got, err := ReadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != len(ring.Keys) {
		t.Fatalf("read %d keys; want %d", len(got.Keys), len(ring.Keys))
	}
	for i := range ring.Keys {
		w, g := ring.Keys[i], got.Keys[i]
		if !g.PublicKey.Equal(w.PublicKey) || g.Name != w.Name || g.Dev != w.Dev {
			t.Errorf("key %d: got %s %q dev=%v; want %s %q dev=%v", i, g.ID(), g.Name, g.Dev, w.ID(), w.Name, w.Dev)
		}
	}
	if !bytes.Equal(got.Marshal(), ring.Marshal()) {
		t.Error("Marshal of the read keyring differs from the written one")
	}
}

// mutate returns the JSON object in doc with member name replaced by the
// raw JSON value (or removed when value is "").
func mutate(t *testing.T, doc []byte, name, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, name)
	} else {
		m[name] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePrivateKeyErrors(t *testing.T) {
	good := MarshalPrivateKey(testKey(t, 1), false)
	if _, _, err := ParsePrivateKey("k.json", good); err != nil {
		t.Fatalf("good file: %v", err)
	}
	other := MarshalPrivateKey(testKey(t, 2), false)
	var o map[string]json.RawMessage
	json.Unmarshal(other, &o)
	b64 := func(n int) string { return `"` + base64.StdEncoding.EncodeToString(make([]byte, n)) + `"` }

	tests := []struct {
		name string
		file []byte
		want []string // substrings of the error
	}{
		{"missing suite", mutate(t, good, "suite", ""), []string{`field "suite": missing`}},
		{"missing id", mutate(t, good, "id", ""), []string{`field "id": missing`}},
		{"missing mldsa_seed", mutate(t, good, "mldsa_seed", ""), []string{`field "mldsa_seed": missing`}},
		{"missing ed25519_seed", mutate(t, good, "ed25519_seed", ""), []string{`field "ed25519_seed": missing`}},
		{"missing dev", mutate(t, good, "dev", ""), []string{`field "dev": missing`}},
		{"unknown suite", mutate(t, good, "suite", `"mldsa87-ed448"`), []string{`field "suite"`, "unknown signature suite"}},
		{"suite not a string", mutate(t, good, "suite", `1`), []string{`field "suite"`, "expected a string"}},
		{"id of another key", mutate(t, good, "id", string(o["id"])), []string{`field "id"`, "expected"}},
		{"id not a string", mutate(t, good, "id", `null`), []string{`field "id"`, "expected a string"}},
		{"mldsa_seed short", mutate(t, good, "mldsa_seed", b64(31)), []string{`field "mldsa_seed": is 31 bytes; expected 32`}},
		{"mldsa_seed long", mutate(t, good, "mldsa_seed", b64(33)), []string{`field "mldsa_seed": is 33 bytes`}},
		{"mldsa_seed not base64", mutate(t, good, "mldsa_seed", `"****"`), []string{`field "mldsa_seed"`, "base64"}},
		{"mldsa_seed unpadded", mutate(t, good, "mldsa_seed", strings.TrimRight(b64(32), `="`)+`"`), []string{`field "mldsa_seed"`, "base64"}},
		{"ed25519_seed short", mutate(t, good, "ed25519_seed", b64(16)), []string{`field "ed25519_seed": is 16 bytes; expected 32`}},
		{"ed25519_seed of another key", mutate(t, good, "ed25519_seed", string(o["ed25519_seed"])), []string{`field "id"`}},
		{"dev a string", mutate(t, good, "dev", `"false"`), []string{`field "dev"`, "expected true or false"}},
		{"unknown field", mutate(t, good, "devv", `true`), []string{`field "devv": unknown field; expected one of: suite, id, mldsa_seed, ed25519_seed, dev`}},
		{"repeated field", bytes.Replace(good, []byte(`"dev": false`), []byte(`"dev": false, "dev": true`), 1), []string{`field "dev": appears twice`}},
		{"trailing data", append(bytes.Clone(good), "{}"...), []string{"unexpected data after the JSON object"}},
		{"not an object", []byte(`["suite"]`), []string{"expected a JSON object"}},
		{"invalid JSON", good[:len(good)/2], []string{"invalid JSON"}},
		{"empty", nil, []string{"invalid JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParsePrivateKey("k.json", tt.file)
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			if !strings.HasPrefix(err.Error(), "k.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParsePrivateKeyErrorHidesSeed(t *testing.T) {
	// A malformed seed must not be echoed into logs.
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("S"), 31))
	_, _, err := ParsePrivateKey("k.json", mutate(t, MarshalPrivateKey(testKey(t, 1), false), "mldsa_seed", `"`+secret+`"`))
	if err == nil || strings.Contains(err.Error(), secret[:10]) {
		t.Errorf("err = %v; want an error that does not quote the seed", err)
	}
}

func TestParseKeyringErrors(t *testing.T) {
	k1, k2 := testKey(t, 1).Public(), testKey(t, 2).Public()
	good := Keyring{Keys: []TrustedKey{{PublicKey: k1, Name: "a"}, {PublicKey: k2, Name: "b"}}}.Marshal()
	if _, err := ParseKeyring("ring.json", good); err != nil {
		t.Fatalf("good file: %v", err)
	}
	// entry returns the keyring with key 1 replaced by a mutation of it.
	entry := func(name, value string) []byte {
		var f struct{ Keys []json.RawMessage }
		json.Unmarshal(good, &f)
		f.Keys[1] = mutate(t, f.Keys[1], name, value)
		b, _ := json.Marshal(map[string]any{"keys": f.Keys})
		return b
	}
	b64 := func(n int) string { return `"` + base64.StdEncoding.EncodeToString(make([]byte, n)) + `"` }

	tests := []struct {
		name string
		file []byte
		want []string
	}{
		{"missing keys", []byte(`{}`), []string{`field "keys": missing`}},
		{"keys not an array", []byte(`{"keys":{}}`), []string{`field "keys"`, "expected an array"}},
		{"no keys", []byte(`{"keys":[]}`), []string{`field "keys": empty`}},
		{"unknown top-level field", []byte(`{"keys":[],"key":[]}`), []string{`field "key": unknown field`}},
		{"entry not an object", []byte(`{"keys":[1]}`), []string{`field "keys[0]"`, "expected a JSON object"}},
		{"missing suite", entry("suite", ""), []string{`field "keys[1].suite": missing`}},
		{"missing id", entry("id", ""), []string{`field "keys[1].id": missing`}},
		{"missing mldsa", entry("mldsa", ""), []string{`field "keys[1].mldsa": missing`}},
		{"missing ed25519", entry("ed25519", ""), []string{`field "keys[1].ed25519": missing`}},
		{"missing dev", entry("dev", ""), []string{`field "keys[1].dev": missing`}},
		{"missing name", entry("name", ""), []string{`field "keys[1].name": missing`}},
		{"unknown suite", entry("suite", `"x"`), []string{`field "keys[1].suite"`, "unknown signature suite"}},
		{"wrong id", entry("id", `"0011223344556677"`), []string{`field "keys[1].id": is "0011223344556677"; expected "` + k2.ID()}},
		{"mldsa short", entry("mldsa", b64(1951)), []string{`field "keys[1].mldsa": is 1951 bytes; expected 1952`}},
		{"mldsa not base64", entry("mldsa", `"%%"`), []string{`field "keys[1].mldsa"`, "base64"}},
		{"ed25519 long", entry("ed25519", b64(33)), []string{`field "keys[1].ed25519": is 33 bytes; expected 32`}},
		{"ed25519 of the other key", entry("ed25519", `"`+base64.StdEncoding.EncodeToString(k1.Ed25519)+`"`), []string{`field "keys[1].id"`}},
		{"dev null", entry("dev", `null`), []string{`field "keys[1].dev"`, "expected true or false"}},
		{"empty name", entry("name", `""`), []string{`field "keys[1].name"`, "1 to 128 bytes"}},
		{"control character in name", entry("name", `"a\u001b[2J"`), []string{`field "keys[1].name"`, "printable"}},
		{"unknown field", entry("nmae", `"x"`), []string{`field "keys[1].nmae": unknown field`}},
		{"same key twice", Keyring{Keys: []TrustedKey{{PublicKey: k1, Name: "a"}, {PublicKey: k1, Name: "b"}}}.Marshal(), []string{`field "keys[1].id"`, "also keys[0]"}},
		{"trailing data", append(bytes.Clone(good), ']'), []string{"unexpected data after the JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyring("ring.json", tt.file)
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			if !strings.HasPrefix(err.Error(), "ring.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add(Keyring{Keys: []TrustedKey{{PublicKey: testKey(f, 1).Public(), Name: "a", Dev: true}}}.Marshal())
	f.Add([]byte(`{"keys":[{"suite":"mldsa65-ed25519","id":"","mldsa":"","ed25519":"","dev":false,"name":"x"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[1],"keys":[2]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseKeyring("fuzz", b)
		if err != nil {
			return
		}
		// What parses re-encodes to a file that parses to the same keys.
		r2, err := ParseKeyring("fuzz", r.Marshal())
		if err != nil {
			t.Fatalf("re-parse of Marshal: %v", err)
		}
		if len(r2.Keys) != len(r.Keys) {
			t.Fatalf("re-parse: %d keys; want %d", len(r2.Keys), len(r.Keys))
		}
		for i := range r.Keys {
			if !r.Keys[i].PublicKey.Equal(r2.Keys[i].PublicKey) || r.Keys[i].Name != r2.Keys[i].Name || r.Keys[i].Dev != r2.Keys[i].Dev {
				t.Fatalf("key %d changed in a round trip", i)
			}
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	f.Add(MarshalPrivateKey(testKey(f, 1), true))
	f.Add([]byte(`{"suite":"mldsa65-ed25519","id":"00","mldsa_seed":"","ed25519_seed":"","dev":false}`))
	f.Add([]byte(`{"suite":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, dev, err := ParsePrivateKey("fuzz", b)
		if err != nil {
			return
		}
		k2, dev2, err := ParsePrivateKey("fuzz", MarshalPrivateKey(k, dev))
		if err != nil || dev2 != dev || !k2.Public().Equal(k.Public()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
