package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"regexp"
)

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// marshalManifest is the one encoding of a manifest. parseManifest accepts
// only this encoding, so a signed manifest has exactly one meaning: no
// repeated members, no members in another letter case, no extra spaces.
func marshalManifest(m *Manifest) ([]byte, error) {
	return json.Marshal(m)
}

// parseManifest decodes and validates the manifest bytes. Every error wraps
// ErrFormat and names the field.
func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrFormat, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("%w: manifest: unexpected data after the JSON object", ErrFormat)
	}
	if err := m.validate(); err != nil {
		return Manifest{}, err
	}
	canon, err := marshalManifest(&m)
	if err != nil || !bytes.Equal(canon, b) {
		return Manifest{}, fmt.Errorf("%w: manifest: not in canonical encoding (compact JSON as the bundle writer emits it)", ErrFormat)
	}
	return m, nil
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: manifest: field %q: %s", ErrFormat, field, fmt.Sprintf(format, args...))
}

// validate checks every field a reader relies on.
func (m *Manifest) validate() error {
	if m.Format != Format {
		return fieldErr("format", "is %d; expected %d", m.Format, Format)
	}
	if _, err := m.Suite.SignatureSize(); err != nil {
		return fieldErr("suite", "%v", err)
	}
	if err := m.Release.Validate("release"); err != nil {
		return fmt.Errorf("%w: manifest: %v", ErrFormat, err)
	}
	p := &m.Payload
	if p.Size <= 0 {
		return fieldErr("payload.size", "is %d; expected a positive size", p.Size)
	}
	if err := checkChunkSize(p.ChunkSize); err != nil {
		return fieldErr("payload.chunk_size", "%v", err)
	}
	want := p.Size / int64(p.ChunkSize)
	if p.Size%int64(p.ChunkSize) != 0 {
		want++
	}
	if int64(len(p.Chunks)) != want {
		return fieldErr("payload.chunks", "has %d chunks; expected %d for %d bytes in chunks of %d", len(p.Chunks), want, p.Size, p.ChunkSize)
	}
	if !hexSHA256.MatchString(p.SHA256) {
		return fieldErr("payload.sha256", "is %q; expected 64 lower-case hex digits", p.SHA256)
	}
	// The build ID is the hash of the slot image, and the payload is the
	// slot image: a manifest that says otherwise contradicts itself.
	if m.Release.BuildID != "" && m.Release.BuildID != p.SHA256 {
		return fieldErr("release.build_id", "is %q; expected the payload's sha256 %q", m.Release.BuildID, p.SHA256)
	}
	zero := map[int]string{} // at most two lengths: a full chunk and the last
	for i, c := range p.Chunks {
		if !hexSHA256.MatchString(c.SHA256) {
			return fieldErr(fmt.Sprintf("payload.chunks[%d].sha256", i), "is %q; expected 64 lower-case hex digits", c.SHA256)
		}
		if !c.Zero {
			continue
		}
		n := p.chunkLen(i)
		if _, ok := zero[n]; !ok {
			zero[n] = zeroHash(n)
		}
		if c.SHA256 != zero[n] {
			return fieldErr(fmt.Sprintf("payload.chunks[%d].sha256", i), "is %q; a zero chunk of %d bytes has sha256 %q", c.SHA256, n, zero[n])
		}
	}
	return nil
}

func checkChunkSize(n int) error {
	if n < MinChunkSize || n > MaxChunkSize || bits.OnesCount(uint(n)) != 1 {
		return fmt.Errorf("is %d; expected a power of two from %d to %d", n, MinChunkSize, MaxChunkSize)
	}
	return nil
}

// parseSignature decodes the signature block. It is not signed itself: the
// checks here only keep garbage away from the verifier.
func parseSignature(b []byte) (Signature, error) {
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Signature{}, fmt.Errorf("%w: signature block: %v", ErrFormat, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Signature{}, fmt.Errorf("%w: signature block: unexpected data after the JSON object", ErrFormat)
	}
	if !hexKeyID.MatchString(s.KeyID) {
		return Signature{}, fmt.Errorf("%w: signature block: field \"key_id\": is %q; expected 16 lower-case hex digits", ErrFormat, s.KeyID)
	}
	if _, err := s.Suite.SignatureSize(); err != nil {
		return Signature{}, fmt.Errorf("%w: signature block: field \"suite\": %v", ErrFormat, err)
	}
	return s, nil
}

var hexKeyID = regexp.MustCompile(`^[0-9a-f]{16}$`)
