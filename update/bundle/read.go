package bundle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pqbranch/pqbranch/update/hybrid"
)

// Header is a bundle's header: what precedes the payload.
type Header struct {
	Manifest      Manifest
	Raw           []byte // the exact header bytes: frame, manifest, signature block
	KeyName       string // the trusted key that signed it ("" when unverified)
	PayloadOffset int64  // file offset of the first stored chunk

	Signature Signature // zero for an unsigned bundle
	Trust     Trust

	offsets []int64 // file offset of each chunk's stored bytes (where it would be, for a zero chunk)
}

// frame is the raw header, split but not yet interpreted.
type frame struct {
	raw       []byte
	manifest  []byte // raw[20 : 20+M]
	signature []byte // raw[20+M : 20+M+S]
}

// signedMessage is what the composite signature covers: the 20-byte frame
// (magic, format and both lengths) followed by the manifest.
func (f *frame) signedMessage() []byte { return f.raw[:frameSize+len(f.manifest)] }

// readFrame reads exactly the header from r. Sizes are checked before
// anything is allocated, so a hostile frame costs at most 1 MiB + 64 KiB.
func readFrame(r io.Reader) (*frame, error) {
	var fixed [frameSize]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, readErr("frame", err)
	}
	if string(fixed[:8]) != Magic {
		return nil, fmt.Errorf("%w: magic is %q; expected %q", ErrFormat, fixed[:8], Magic)
	}
	if v := binary.BigEndian.Uint32(fixed[8:]); v != Format {
		return nil, fmt.Errorf("%w: format is %d; expected %d", ErrFormat, v, Format)
	}
	m := binary.BigEndian.Uint32(fixed[12:])
	s := binary.BigEndian.Uint32(fixed[16:])
	if m == 0 || m > MaxManifest {
		return nil, fmt.Errorf("%w: manifest length is %d; expected 1 to %d", ErrFormat, m, MaxManifest)
	}
	if s > MaxSignature {
		return nil, fmt.Errorf("%w: signature length is %d; expected at most %d", ErrFormat, s, MaxSignature)
	}
	raw := make([]byte, frameSize+int(m)+int(s))
	copy(raw, fixed[:])
	if _, err := io.ReadFull(r, raw[frameSize:frameSize+m]); err != nil {
		return nil, readErr("manifest", err)
	}
	if _, err := io.ReadFull(r, raw[frameSize+m:]); err != nil {
		return nil, readErr("signature block", err)
	}
	return &frame{raw: raw, manifest: raw[frameSize : frameSize+m], signature: raw[frameSize+m:]}, nil
}

// readErr maps a short read to ErrTruncated.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: in the %s", ErrTruncated, what)
	}
	return fmt.Errorf("bundle: reading the %s: %w", what, err)
}

// ReadHeader reads exactly the header from r, verifies its composite
// signature with keys, and only then parses the manifest, strictly.
func ReadHeader(r io.Reader, keys hybrid.Keyring) (*Header, error) {
	f, err := readFrame(r)
	if err != nil {
		return nil, err
	}
	if len(f.signature) == 0 {
		return nil, fmt.Errorf("%w: the signature block is empty", ErrUnsigned)
	}
	sig, err := parseSignature(f.signature)
	if err != nil {
		return nil, err
	}
	key, err := keys.Verify(sig.KeyID, f.signedMessage(), sig.Sig)
	switch {
	case errors.Is(err, hybrid.ErrUnknownKey):
		return nil, fmt.Errorf("%w: %w", ErrUnknownKey, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	if key.Suite != sig.Suite {
		// Cannot verify under the wrong suite, but say so plainly.
		return nil, fmt.Errorf("%w: signature block names suite %q but key %s is %q", ErrSignature, sig.Suite, sig.KeyID, key.Suite)
	}
	m, err := parseManifest(f.manifest)
	if err != nil {
		return nil, err
	}
	if m.Suite != sig.Suite {
		return nil, fmt.Errorf("%w: manifest: field \"suite\": is %q; expected %q, the signature's suite", ErrFormat, m.Suite, sig.Suite)
	}
	// A development key must not be able to sign something that looks
	// like a production release.
	if key.Dev && !m.Release.DevKey {
		return nil, fmt.Errorf("%w: signed with development key %q (%s) but manifest field \"release.dev_key\" is false", ErrSignature, key.Name, sig.KeyID)
	}
	h := newHeader(f, m, sig, Verified)
	h.KeyName = key.Name
	return h, nil
}

// Inspect reads the header of the bundle at path without checking its
// signature, for `pqbuild bundle inspect`. The result has Trust Unverified:
// it may be shown, never acted on (Check and the chunk verifiers refuse
// it). An unsigned bundle inspects with a zero Signature.
func Inspect(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h, err := inspect(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

func inspect(r io.Reader) (*Header, error) {
	f, err := readFrame(r)
	if err != nil {
		return nil, err
	}
	var sig Signature
	if len(f.signature) > 0 {
		if sig, err = parseSignature(f.signature); err != nil {
			return nil, err
		}
	}
	m, err := parseManifest(f.manifest)
	if err != nil {
		return nil, err
	}
	return newHeader(f, m, sig, Unverified), nil
}

func newHeader(f *frame, m Manifest, sig Signature, t Trust) *Header {
	h := &Header{Manifest: m, Raw: f.raw, PayloadOffset: int64(len(f.raw)), Signature: sig, Trust: t}
	h.offsets = make([]int64, len(m.Payload.Chunks))
	off := h.PayloadOffset
	for i, c := range m.Payload.Chunks {
		h.offsets[i] = off
		if !c.Zero {
			off += int64(m.Payload.chunkLen(i))
		}
	}
	return h
}
