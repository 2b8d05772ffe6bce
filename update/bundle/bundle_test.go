package bundle

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

const testChunk = MinChunkSize // 64 KiB: small bundles, many chunks

func testKey(t testing.TB, n byte) *hybrid.PrivateKey {
	t.Helper()
	var seed [32]byte
	seed[0] = n
	k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.NewChaCha8(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ring(keys ...*hybrid.PrivateKey) hybrid.Keyring {
	var r hybrid.Keyring
	for i, k := range keys {
		r.Keys = append(r.Keys, hybrid.TrustedKey{PublicKey: k.Public(), Name: fmt.Sprintf("key-%d", i)})
	}
	return r
}

func testRelease() release.Release {
	return release.Release{Version: "0.2.0+gabcdef012345", Board: "qemu-x86_64", Profile: release.Prod,
		Kernel: "6.1.0-56-amd64", SecurityVersion: 3, Epoch: 1767225600}
}

// payloadOf builds a payload from a pattern: 'r' is a random chunk, '0' an
// all-zero chunk, and tail extra bytes ('r' or '0' by tailKind) follow.
func payloadOf(seed uint64, pattern string, tail int, tailZero bool) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var p []byte
	add := func(n int, zero bool) {
		b := make([]byte, n)
		if !zero {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			b[rng.IntN(n)] |= 1 // never accidentally all zero
		}
		p = append(p, b...)
	}
	for _, c := range pattern {
		add(testChunk, c == '0')
	}
	if tail > 0 {
		add(tail, tailZero)
	}
	return p
}

func build(t testing.TB, payload []byte, rel release.Release, key *hybrid.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := WriteChunkSize(&buf, rel, bytes.NewReader(payload), int64(len(payload)), testChunk, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// parts splits a bundle into manifest, signature block and payload.
func parts(t testing.TB, b []byte) (manifest, sig, payload []byte) {
	t.Helper()
	m := int(binary.BigEndian.Uint32(b[12:]))
	s := int(binary.BigEndian.Uint32(b[16:]))
	return b[20 : 20+m], b[20+m : 20+m+s], b[20+m+s:]
}

// join frames the parts into a bundle (without re-signing).
func join(manifest, sig, payload []byte) []byte {
	b := []byte(Magic)
	b = binary.BigEndian.AppendUint32(b, Format)
	b = binary.BigEndian.AppendUint32(b, uint32(len(manifest)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(sig)))
	return append(append(append(b, manifest...), sig...), payload...)
}

// withSig rewrites the signature block's sig with f.
func withSig(t testing.TB, b []byte, f func(sig []byte) []byte) []byte {
	t.Helper()
	m, s, p := parts(t, b)
	var sb Signature
	if err := json.Unmarshal(s, &sb); err != nil {
		t.Fatal(err)
	}
	sb.Sig = f(bytes.Clone(sb.Sig))
	ns, _ := json.Marshal(sb)
	return join(m, ns, p)
}

func TestRoundTrip(t *testing.T) {
	key := testKey(t, 1)
	tests := []struct {
		name     string
		pattern  string
		tail     int
		tailZero bool
	}{
		{"one byte", "", 1, false},
		{"one short chunk", "", testChunk - 1, false},
		{"exactly one chunk", "r", 0, false},
		{"one chunk and one byte", "r", 1, false},
		{"zero chunk in the middle", "rr0r", 17, false},
		{"leading zero chunks", "00r", 4000, false},
		{"all zero", "00", 5, true},
		{"zero tail", "r0r", 300, true},
		{"zero tail after zero chunk", "r0", 1, true},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := payloadOf(uint64(n), tt.pattern, tt.tail, tt.tailZero)
			var buf bytes.Buffer
			wm, err := WriteChunkSize(&buf, testRelease(), bytes.NewReader(payload), int64(len(payload)), testChunk, key)
			if err != nil {
				t.Fatal(err)
			}
			file := buf.Bytes()
			h, err := VerifyReader(bytes.NewReader(file), ring(key), &Policy{Board: "qemu-x86_64", SecurityFloor: 3})
			if err != nil {
				t.Fatal(err)
			}
			if h.Trust != Verified || h.KeyName != "key-0" {
				t.Errorf("trust %s, key %q; want verified by key-0", h.Trust, h.KeyName)
			}
			mb, _ := json.Marshal(wm)
			hb, _ := json.Marshal(h.Manifest)
			if !bytes.Equal(mb, hb) {
				t.Errorf("read manifest differs from written:\n%s\n%s", hb, mb)
			}
			if h.Manifest.Release.BuildID != h.Manifest.Payload.SHA256 {
				t.Errorf("build_id %q; want the payload sha256", h.Manifest.Release.BuildID)
			}
			if !bytes.Equal(h.Raw, file[:h.PayloadOffset]) {
				t.Error("Raw is not the header bytes")
			}
			if h.FileSize() != int64(len(file)) {
				t.Errorf("FileSize %d; file is %d bytes", h.FileSize(), len(file))
			}
			// Zero chunks are marked exactly where the payload is zero, and not stored.
			var stored int64
			for i := range h.Chunks() {
				chunk := payload[i*testChunk : i*testChunk+h.ChunkLen(i)]
				if h.Manifest.Payload.Chunks[i].Zero != isZero(chunk) {
					t.Errorf("chunk %d: zero=%v; payload zero=%v", i, h.Manifest.Payload.Chunks[i].Zero, isZero(chunk))
				}
				off, n, st := h.ChunkRange(i)
				if st {
					if !bytes.Equal(file[off:off+n], chunk) {
						t.Errorf("chunk %d: ChunkRange does not locate the chunk's bytes", i)
					}
					stored += n
				}
			}
			if int64(len(file))-h.PayloadOffset != stored {
				t.Errorf("payload section %d bytes; stored chunks %d", int64(len(file))-h.PayloadOffset, stored)
			}
			// Streaming from every chunk gives the payload's tail.
			for from := 0; from <= h.Chunks(); from++ {
				off, _, _ := h.ChunkRange(from)
				var got []byte
				next := from
				err := h.ReadPayload(bytes.NewReader(file[off:]), from, func(i int, data []byte) error {
					if i != next {
						t.Fatalf("fn called for chunk %d; want %d", i, next)
					}
					next++
					got = append(got, data...)
					return nil
				})
				if err != nil {
					t.Fatalf("ReadPayload from %d: %v", from, err)
				}
				if want := payload[min(from*testChunk, len(payload)):]; !bytes.Equal(got, want) {
					t.Fatalf("ReadPayload from %d: %d bytes differ from the payload's %d", from, len(got), len(want))
				}
			}
		})
	}
}

func TestWriteDefaultChunkSizeAndVerifyFile(t *testing.T) {
	key := testKey(t, 1)
	payload := bytes.Repeat([]byte("slot image "), (5<<20)/2/11) // 2.5 MiB: three 1 MiB chunks
	path := filepath.Join(t.TempDir(), "update.pqb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rel := testRelease()
	rel.DevKey = true
	if _, err := Write(f, rel, bytes.NewReader(payload), int64(len(payload)), key); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dev := ring(key)
	dev.Keys[0].Dev = true
	h, err := VerifyFile(path, dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Manifest.Payload.ChunkSize != DefaultChunkSize || h.Chunks() != 3 || h.ChunkLen(2) != len(payload)-2<<20 {
		t.Errorf("chunk size %d, %d chunks, last %d", h.Manifest.Payload.ChunkSize, h.Chunks(), h.ChunkLen(2))
	}
	ih, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if ih.Trust != Unverified || ih.Signature.KeyID != key.Public().ID() || !bytes.Equal(ih.Raw, h.Raw) {
		t.Errorf("Inspect: trust %s key %s", ih.Trust, ih.Signature.KeyID)
	}
}

// TestEveryTruncation cuts a small bundle at every length: each must fail
// with ErrTruncated, in the header or in the payload.
func TestEveryTruncation(t *testing.T) {
	key := testKey(t, 1)
	file := build(t, payloadOf(1, "0", 1000, false), testRelease(), key)
	for n := range len(file) {
		_, err := VerifyReader(bytes.NewReader(file[:n]), ring(key), nil)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("truncated to %d of %d bytes: err = %v; want ErrTruncated", n, len(file), err)
		}
	}
	if _, err := VerifyReader(bytes.NewReader(file), ring(key), nil); err != nil {
		t.Fatalf("whole file: %v", err)
	}

	// A larger bundle, cut around every chunk boundary.
	file = build(t, payloadOf(2, "r0rr", 10, false), testRelease(), key)
	h, err := ReadHeader(bytes.NewReader(file), ring(key))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= h.Chunks(); i++ {
		off, _, _ := h.ChunkRange(i)
		for _, n := range []int64{off - 1, off, off + 1} {
			if n < 0 || n >= int64(len(file)) {
				continue
			}
			if _, err := VerifyReader(bytes.NewReader(file[:n]), ring(key), nil); !errors.Is(err, ErrTruncated) {
				t.Fatalf("truncated to %d of %d bytes: err = %v; want ErrTruncated", n, len(file), err)
			}
		}
	}
}

func TestRejects(t *testing.T) {
	key, other := testKey(t, 1), testKey(t, 2)
	payload := payloadOf(3, "rr0r", 100, false)
	good := build(t, payload, testRelease(), key)
	m, s, p := parts(t, good)
	pqSize := mldsa65.SignatureSize

	devRel := testRelease()
	devSigned := build(t, payload, devRel, other) // a prod release signed by a dev key
	devRing := ring(key, other)
	devRing.Keys[1].Dev = true

	flipPayload := bytes.Clone(good)
	h, err := ReadHeader(bytes.NewReader(good), ring(key))
	if err != nil {
		t.Fatal(err)
	}
	off, _, _ := h.ChunkRange(3)
	flipPayload[off+77] ^= 0x10

	tests := []struct {
		name    string
		file    []byte
		keys    hybrid.Keyring
		want    []error
		notWant []error
		text    string
	}{
		{"bad Ed25519 signature", withSig(t, good, func(b []byte) []byte { b[pqSize+5] ^= 1; return b }), ring(key),
			[]error{ErrSignature, hybrid.ErrEd25519}, []error{hybrid.ErrMLDSA}, ""},
		{"bad ML-DSA signature", withSig(t, good, func(b []byte) []byte { b[5] ^= 1; return b }), ring(key),
			[]error{ErrSignature, hybrid.ErrMLDSA}, []error{hybrid.ErrEd25519}, ""},
		{"Ed25519 signature stripped", withSig(t, good, func(b []byte) []byte { return b[:pqSize] }), ring(key),
			[]error{ErrSignature, hybrid.ErrSignatureLength}, nil, ""},
		{"ML-DSA signature stripped", withSig(t, good, func(b []byte) []byte { return b[pqSize:] }), ring(key),
			[]error{ErrSignature, hybrid.ErrSignatureLength}, nil, ""},
		{"manifest changed", join(bytes.Replace(m, []byte(`"security_version":3`), []byte(`"security_version":9`), 1), s, p), ring(key),
			[]error{ErrSignature, hybrid.ErrMLDSA, hybrid.ErrEd25519}, nil, ""},
		{"unsigned", join(m, nil, p), ring(key), []error{ErrUnsigned}, []error{ErrSignature}, ""},
		{"unknown key", good, ring(other), []error{ErrUnknownKey}, []error{ErrSignature}, key.Public().ID()},
		{"flipped payload bit", flipPayload, ring(key), []error{ErrChunk}, nil, "chunk 3"},
		{"trailing byte", append(bytes.Clone(good), 0), ring(key), []error{ErrFormat}, nil, "after the payload"},
		{"dev key on a prod release", devSigned, devRing, []error{ErrSignature}, nil, "dev_key"},
		{"bad magic", append([]byte("PQBUNDLX"), good[8:]...), ring(key), []error{ErrFormat}, nil, "magic"},
		{"format 2", append(append(bytes.Clone(good[:8]), 0, 0, 0, 2), good[12:]...), ring(key), []error{ErrFormat}, nil, "format is 2"},
		{"manifest over 1 MiB", append(append(bytes.Clone(good[:12]), 0, 0x10, 0, 1), good[16:]...), ring(key), []error{ErrFormat}, nil, "manifest length"},
		{"empty manifest", join(nil, s, p), ring(key), []error{ErrFormat}, nil, "manifest length is 0"},
		{"signature over 64 KiB", append(append(bytes.Clone(good[:16]), 0, 1, 0, 1), good[20:]...), ring(key), []error{ErrFormat}, nil, "signature length"},
		{"signature block garbage", join(m, bytes.Repeat([]byte("x"), len(s)), p), ring(key), []error{ErrFormat}, nil, "signature block"},
		{"signature block unknown field", join(m, append(bytes.TrimSuffix(bytes.Clone(s), []byte("}")), `,"x":1}`...), p), ring(key), []error{ErrFormat}, nil, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyReader(bytes.NewReader(tt.file), tt.keys, nil)
			if err == nil {
				t.Fatal("verified; want an error")
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q is not %v", err, w)
				}
			}
			for _, w := range tt.notWant {
				if errors.Is(err, w) {
					t.Errorf("error %q claims %v", err, w)
				}
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not mention %q", err, tt.text)
			}
		})
	}
}

func TestCheckPolicy(t *testing.T) {
	key := testKey(t, 1)
	h, err := ReadHeader(bytes.NewReader(build(t, payloadOf(1, "", 10, false), testRelease(), key)), ring(key))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		policy Policy
		want   error
		text   []string
	}{
		{"same board, floor below", Policy{Board: "qemu-x86_64", SecurityFloor: 2}, nil, nil},
		{"floor equal", Policy{Board: "qemu-x86_64", SecurityFloor: 3}, nil, nil},
		{"wrong board", Policy{Board: "protectli-vp2420"}, ErrBoard, []string{`"qemu-x86_64"`, `"protectli-vp2420"`}},
		{"no board", Policy{}, ErrBoard, nil},
		{"security version below floor", Policy{Board: "qemu-x86_64", SecurityFloor: 4}, ErrSecurityVersion, []string{"3", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.Check(tt.policy)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Check = %v; want %v", err, tt.want)
			}
			for _, s := range tt.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}
	// VerifyFile applies the policy too.
	path := filepath.Join(t.TempDir(), "b.pqb")
	os.WriteFile(path, h.Raw, 0o644)
	if _, err := VerifyFile(path, ring(key), &Policy{Board: "other"}); !errors.Is(err, ErrBoard) || !strings.Contains(err.Error(), path) {
		t.Errorf("VerifyFile(wrong board) = %v; want ErrBoard naming the file", err)
	}
}

func TestUnverifiedHeaderRefused(t *testing.T) {
	key := testKey(t, 1)
	m, _, p := parts(t, build(t, payloadOf(1, "r", 0, false), testRelease(), key))
	unsigned := join(m, nil, p)
	path := filepath.Join(t.TempDir(), "unsigned.pqb")
	if err := os.WriteFile(path, unsigned, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFile(path, ring(key), nil); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("VerifyFile(unsigned) = %v; want ErrUnsigned", err)
	}
	h, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Trust != Unverified || h.Trust.String() != "unverified" || h.Signature.KeyID != "" {
		t.Errorf("Inspect(unsigned): trust %s, key %q", h.Trust, h.Signature.KeyID)
	}
	if err := h.Check(Policy{Board: "qemu-x86_64"}); !errors.Is(err, ErrUnverified) {
		t.Errorf("Check(unverified) = %v; want ErrUnverified", err)
	}
	err = h.ReadPayload(bytes.NewReader(p), 0, func(int, []byte) error { return nil })
	if !errors.Is(err, ErrUnverified) {
		t.Errorf("ReadPayload(unverified) = %v; want ErrUnverified", err)
	}
	if err := h.VerifyChunk(0, p); !errors.Is(err, ErrUnverified) {
		t.Errorf("VerifyChunk(unverified) = %v; want ErrUnverified", err)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

func TestReadPayloadZeroChunksReadNothing(t *testing.T) {
	key := testKey(t, 1)
	file := build(t, payloadOf(1, "r000", 9, true), testRelease(), key)
	h, err := ReadHeader(bytes.NewReader(file), ring(key))
	if err != nil {
		t.Fatal(err)
	}
	off, _, _ := h.ChunkRange(1)
	cr := &countingReader{r: bytes.NewReader(file[off:])}
	var seen int
	err = h.ReadPayload(cr, 1, func(i int, data []byte) error {
		if !isZero(data) || len(data) != h.ChunkLen(i) {
			t.Errorf("chunk %d: %d bytes, zero=%v", i, len(data), isZero(data))
		}
		data[0] = 0xff // a careless consumer must not poison the next zero chunk
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != 4 || cr.n != 0 {
		t.Errorf("saw %d chunks reading %d bytes; want 4 chunks, 0 bytes", seen, cr.n)
	}
	// fn's error stops the stream and is returned as is.
	stop := errors.New("disk full")
	if err := h.ReadPayload(bytes.NewReader(file[h.PayloadOffset:]), 0, func(int, []byte) error { return stop }); err != stop {
		t.Errorf("ReadPayload = %v; want fn's error", err)
	}
}

// changingReaderAt returns different bytes on its second pass.
type changingReaderAt struct {
	data  []byte
	reads int
}

func (c *changingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	c.reads++
	n := copy(b, c.data[off:])
	if c.reads > 1 && n > 0 {
		b[0] ^= 1
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func TestWriteRejects(t *testing.T) {
	key := testKey(t, 1)
	payload := payloadOf(1, "", 100, false)
	badRel := testRelease()
	badRel.Profile = "staging"
	otherID := testRelease()
	otherID.BuildID = strings.Repeat("ab", 32)
	tests := []struct {
		name      string
		rel       release.Release
		r         io.ReaderAt
		size      int64
		chunkSize int
		key       *hybrid.PrivateKey
		text      string
	}{
		{"no key", testRelease(), bytes.NewReader(payload), 100, testChunk, nil, "no signing key"},
		{"empty payload", testRelease(), bytes.NewReader(nil), 0, testChunk, key, "size is 0"},
		{"chunk size not a power of two", testRelease(), bytes.NewReader(payload), 100, 100000, key, "power of two"},
		{"chunk size too large", testRelease(), bytes.NewReader(payload), 100, 32 << 20, key, "power of two"},
		{"invalid release", badRel, bytes.NewReader(payload), 100, testChunk, key, "profile"},
		{"build id of other bits", otherID, bytes.NewReader(payload), 100, testChunk, key, "build_id"},
		{"payload shorter than size", testRelease(), bytes.NewReader(payload), 200, testChunk, key, "reading payload chunk 0"},
		{"payload changes between passes", testRelease(), &changingReaderAt{data: payload}, 100, testChunk, key, "changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WriteChunkSize(io.Discard, tt.rel, tt.r, tt.size, tt.chunkSize, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("err = %v; want one mentioning %q", err, tt.text)
			}
		})
	}
}

func BenchmarkVerifyChunks(b *testing.B) {
	key := testKey(b, 1)
	payload := make([]byte, 32<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(payload)
	var buf bytes.Buffer
	if _, err := Write(&buf, testRelease(), bytes.NewReader(payload), int64(len(payload)), key); err != nil {
		b.Fatal(err)
	}
	file := buf.Bytes()
	h, err := ReadHeader(bytes.NewReader(file), ring(key))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := h.ReadPayload(bytes.NewReader(file[h.PayloadOffset:]), 0, func(int, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
