package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

// randomManifest returns a valid manifest with random contents, like the
// random structs of crypto/tls's handshake_messages_test.go.
func randomManifest(rng *rand.Rand) Manifest {
	hexOf := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return hex.EncodeToString(b)
	}
	word := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789-.+<>&\"\\é"
		r := []rune(letters)
		var s []rune
		for range 1 + rng.IntN(20) {
			s = append(s, r[rng.IntN(len(r))])
		}
		return string(s)
	}
	rel := release.Release{Version: word(), Board: word(), Profile: release.Prod, Kernel: word(),
		SecurityVersion: rng.Uint64(), Epoch: rng.Int64() - rng.Int64(), DevKey: rng.IntN(2) == 0}
	if rng.IntN(2) == 0 {
		rel.Profile = release.Dev
		rel.Fault = []string{"", release.FaultHang, release.FaultPanic, release.FaultUnhealthy}[rng.IntN(4)]
	}
	// Chunk sizes up to 512 KiB: a zero chunk's hash is checked by hashing
	// its zero bytes, which at 16 MiB would make the test slow, not better.
	cs := MinChunkSize << rng.IntN(4)
	size := 1 + rng.Int64N(int64(cs)*int64(1+rng.IntN(40)))
	p := Payload{Size: size, ChunkSize: cs, SHA256: hexOf(32)}
	if rng.IntN(2) == 0 {
		rel.BuildID = p.SHA256
	}
	for i := range int((size + int64(cs) - 1) / int64(cs)) {
		if rng.IntN(4) == 0 {
			p.Chunks = append(p.Chunks, Chunk{SHA256: zeroHash(p.chunkLen(i)), Zero: true})
		} else {
			p.Chunks = append(p.Chunks, Chunk{SHA256: hexOf(32)})
		}
	}
	return Manifest{Format: Format, Suite: hybrid.MLDSA65Ed25519, Release: rel, Payload: p}
}

func TestManifestRandomRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		m := randomManifest(rng)
		b, err := marshalManifest(&m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseManifest(b)
		if err != nil {
			t.Fatalf("manifest %d: %v\n%s", i, err, b)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("manifest %d: round trip changed it:\n got %+v\nwant %+v", i, got, m)
		}
		if i >= 20 {
			continue // every truncation of the first 20 is enough: the cost is quadratic
		}
		for n := range len(b) {
			if _, err := parseManifest(b[:n]); !errors.Is(err, ErrFormat) {
				t.Fatalf("manifest %d truncated to %d bytes: err = %v; want ErrFormat", i, n, err)
			}
		}
	}
}

// TestManifestRejects signs each bad manifest with a trusted key, so the
// strict parse after verification is what rejects it.
func TestManifestRejects(t *testing.T) {
	key := testKey(t, 1)
	base := func() Manifest {
		rel := testRelease()
		return Manifest{Format: Format, Suite: hybrid.MLDSA65Ed25519, Release: rel, Payload: Payload{
			Size: 2*testChunk + 10, ChunkSize: testChunk, SHA256: strings.Repeat("ab", 32),
			Chunks: []Chunk{{SHA256: strings.Repeat("01", 32)}, {SHA256: zeroHash(testChunk), Zero: true}, {SHA256: strings.Repeat("02", 32)}},
		}}
	}
	enc := func(f func(m *Manifest)) []byte {
		m := base()
		f(&m)
		b, _ := json.Marshal(m)
		return b
	}
	good := enc(func(*Manifest) {})
	tests := []struct {
		name     string
		manifest []byte
		text     string
	}{
		{"format 2", enc(func(m *Manifest) { m.Format = 2 }), `field "format": is 2`},
		{"unknown suite", enc(func(m *Manifest) { m.Suite = "mldsa87-ed448" }), `field "suite"`},
		{"bad release", enc(func(m *Manifest) { m.Release.Version = "" }), `field "version": missing`},
		{"build id of other bits", enc(func(m *Manifest) { m.Release.BuildID = strings.Repeat("cd", 32) }), `field "release.build_id"`},
		{"size 0", enc(func(m *Manifest) { m.Payload.Size = 0 }), `field "payload.size"`},
		{"chunk size not a power of two", enc(func(m *Manifest) { m.Payload.ChunkSize = 3 << 16 }), `field "payload.chunk_size"`},
		{"chunk size 32 KiB", enc(func(m *Manifest) { m.Payload.ChunkSize = 32 << 10 }), `field "payload.chunk_size"`},
		{"chunk size 32 MiB", enc(func(m *Manifest) { m.Payload.ChunkSize = 32 << 20 }), `field "payload.chunk_size"`},
		{"one chunk too many", enc(func(m *Manifest) { m.Payload.Size = 2 * testChunk }), `field "payload.chunks": has 3 chunks; expected 2`},
		{"one chunk too few", enc(func(m *Manifest) { m.Payload.Size = 3*testChunk + 1 }), `field "payload.chunks": has 3 chunks; expected 4`},
		{"upper-case chunk hash", enc(func(m *Manifest) { m.Payload.Chunks[2].SHA256 = strings.Repeat("AB", 32) }), `field "payload.chunks[2].sha256"`},
		{"short chunk hash", enc(func(m *Manifest) { m.Payload.Chunks[0].SHA256 = "01" }), `field "payload.chunks[0].sha256"`},
		{"zero chunk with another hash", enc(func(m *Manifest) { m.Payload.Chunks[0].Zero = true }), `field "payload.chunks[0].sha256"`},
		{"bad payload hash", enc(func(m *Manifest) { m.Payload.SHA256 = "x" }), `field "payload.sha256"`},
		{"unknown field", bytes.Replace(good, []byte(`"format":1`), []byte(`"format":1,"formta":1`), 1), "unknown field"},
		{"unknown release field", bytes.Replace(good, []byte(`"board"`), []byte(`"bored":"x","board"`), 1), "unknown field"},
		{"repeated field", bytes.Replace(good, []byte(`"format":1`), []byte(`"format":1,"format":1`), 1), "canonical"},
		{"field in another case", bytes.Replace(good, []byte(`"format":1`), []byte(`"FORMAT":1`), 1), "canonical"},
		{"indented", func() []byte { var b bytes.Buffer; json.Indent(&b, good, "", " "); return b.Bytes() }(), "canonical"},
		{"trailing data", append(bytes.Clone(good), '{'), "after the JSON object"},
		{"not an object", []byte(`[]`), "manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, err := signedHeader(tt.manifest, key)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ReadHeader(bytes.NewReader(header), ring(key))
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %v; want ErrFormat mentioning %q", err, tt.text)
			}
		})
	}
	header, err := signedHeader(good, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadHeader(bytes.NewReader(header), ring(key)); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
}

func FuzzManifest(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		m := randomManifest(rng)
		b, _ := marshalManifest(&m)
		f.Add(b)
	}
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"suite":"mldsa65-ed25519","release":{},"payload":{"size":1,"chunk_size":65536,"sha256":"","chunks":[{}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		// Only the canonical encoding parses: re-encoding gives the input.
		again, err := marshalManifest(&m)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical manifest: %q", b)
		}
	})
}

func FuzzReadHeader(f *testing.F) {
	key := testKey(f, 1)
	keys := ring(key)
	small := build(f, payloadOf(1, "0", 10, false), testRelease(), key)
	m, s, _ := parts(f, small)
	f.Add(small)
	f.Add(join(m, nil, nil))
	f.Add(small[:30])
	f.Add([]byte(Magic + "\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00{}"))
	f.Add(join([]byte(`{"format":1}`), s, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b), keys)
		if err == nil {
			if h.Trust != Verified || !bytes.Equal(h.Raw, b[:len(h.Raw)]) || h.PayloadOffset != int64(len(h.Raw)) {
				t.Fatalf("inconsistent header: trust %s, %d raw bytes, payload at %d", h.Trust, len(h.Raw), h.PayloadOffset)
			}
		} else if !knownError(err) {
			t.Fatalf("unclassified error: %v", err)
		}
		// The unverified path parses the manifest of whatever comes in.
		ih, err := inspect(bytes.NewReader(b))
		if err == nil {
			if ih.Trust != Unverified || ih.Chunks() != len(ih.Manifest.Payload.Chunks) {
				t.Fatalf("inconsistent inspected header")
			}
			if end, _, _ := ih.ChunkRange(ih.Chunks()); end != ih.FileSize() || end < ih.PayloadOffset {
				t.Fatalf("chunk ranges end at %d; file size %d", end, ih.FileSize())
			}
		} else if !knownError(err) {
			t.Fatalf("unclassified inspect error: %v", err)
		}
	})
}

func knownError(err error) bool {
	for _, e := range []error{ErrFormat, ErrTruncated, ErrSignature, ErrUnsigned, ErrUnknownKey} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
