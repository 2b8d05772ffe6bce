package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/pqbranch/pqbranch/update/hybrid"
)

// Chunks is the number of chunks in the payload.
func (h *Header) Chunks() int { return len(h.Manifest.Payload.Chunks) }

// ChunkLen is the number of payload bytes in chunk i (the last may be short).
func (h *Header) ChunkLen(i int) int { return h.Manifest.Payload.chunkLen(i) }

// ChunkRange is the file offset and stored length of chunk i: n is 0 and
// stored false for a zero chunk, whose off is where the next stored chunk
// begins. i == Chunks() gives the end of the file.
func (h *Header) ChunkRange(i int) (off, n int64, stored bool) {
	if i == h.Chunks() {
		return h.FileSize(), 0, false
	}
	if h.Manifest.Payload.Chunks[i].Zero {
		return h.offsets[i], 0, false
	}
	return h.offsets[i], int64(h.ChunkLen(i)), true
}

// FileSize is the length of the whole bundle file.
func (h *Header) FileSize() int64 {
	n := h.Chunks()
	if n == 0 {
		return h.PayloadOffset
	}
	off, sz, _ := h.ChunkRange(n - 1)
	return off + sz
}

func (h *Header) verified() error {
	if h.Trust != Verified {
		return fmt.Errorf("%w: trust is %s", ErrUnverified, h.Trust)
	}
	return nil
}

// VerifyChunk checks that data is chunk i of the payload.
func (h *Header) VerifyChunk(i int, data []byte) error {
	if err := h.verified(); err != nil {
		return err
	}
	if i < 0 || i >= h.Chunks() {
		return fmt.Errorf("%w: chunk %d: the payload has chunks 0 to %d", ErrChunk, i, h.Chunks()-1)
	}
	if len(data) != h.ChunkLen(i) {
		return fmt.Errorf("%w: chunk %d: is %d bytes; expected %d", ErrChunk, i, len(data), h.ChunkLen(i))
	}
	sum := sha256.Sum256(data)
	if got, want := hex.EncodeToString(sum[:]), h.Manifest.Payload.Chunks[i].SHA256; got != want {
		return fmt.Errorf("%w: chunk %d: sha256 is %s; the manifest says %s", ErrChunk, i, got, want)
	}
	return nil
}

// NewPayloadHash returns the hash to feed the whole payload into, zero
// chunks included, in order; CheckPayloadSum compares its sum.
func (h *Header) NewPayloadHash() hash.Hash { return sha256.New() }

// CheckPayloadSum compares the sum of NewPayloadHash with the manifest.
func (h *Header) CheckPayloadSum(sum []byte) error {
	if got, want := hex.EncodeToString(sum), h.Manifest.Payload.SHA256; got != want {
		return fmt.Errorf("%w: sha256 is %s; the manifest says %s", ErrPayload, got, want)
	}
	return nil
}

// Check applies the device's policy: board, security floor, format, suite.
func (h *Header) Check(p Policy) error {
	if err := h.verified(); err != nil {
		return err
	}
	m := &h.Manifest
	if m.Format != Format {
		return fmt.Errorf("%w: format is %d; expected %d", ErrFormat, m.Format, Format)
	}
	if _, err := m.Suite.SignatureSize(); err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if p.Board == "" {
		// A policy without a board would accept any board's image.
		return fmt.Errorf("%w: the policy names no board", ErrBoard)
	}
	if m.Release.Board != p.Board {
		return fmt.Errorf("%w: the bundle is for board %q; this device is %q", ErrBoard, m.Release.Board, p.Board)
	}
	if m.Release.SecurityVersion < p.SecurityFloor {
		return fmt.Errorf("%w: the bundle's security version is %d; the device accepts %d or higher",
			ErrSecurityVersion, m.Release.SecurityVersion, p.SecurityFloor)
	}
	return nil
}

// ReadPayload reads chunks from..Chunks()-1 from r, which must be
// positioned at ChunkRange(from)'s offset, verifies each and passes it to
// fn in order. data is valid only during fn. A zero chunk is passed as a
// shared buffer of zeros without reading r. Memory is bounded by two
// chunks whatever the payload size. Starting at chunk 0 also checks the
// whole payload's sha256 at the end; resuming (from > 0) relies on the
// per-chunk hashes, which the signature covers just as well.
func (h *Header) ReadPayload(r io.Reader, from int, fn func(i int, data []byte) error) error {
	if err := h.verified(); err != nil {
		return err
	}
	if from < 0 || from > h.Chunks() {
		return fmt.Errorf("bundle: ReadPayload from chunk %d; the payload has chunks 0 to %d", from, h.Chunks()-1)
	}
	var whole hash.Hash
	if from == 0 {
		whole = h.NewPayloadHash()
	}
	var buf, zeros []byte
	for i := from; i < h.Chunks(); i++ {
		n := h.ChunkLen(i)
		var data []byte
		if h.Manifest.Payload.Chunks[i].Zero {
			if zeros == nil {
				zeros = make([]byte, h.Manifest.Payload.ChunkSize)
			}
			clear(zeros) // fn may have written into it
			data = zeros[:n]
		} else {
			if buf == nil {
				buf = make([]byte, h.Manifest.Payload.ChunkSize)
			}
			data = buf[:n]
			if _, err := io.ReadFull(r, data); err != nil {
				return readErr(fmt.Sprintf("payload chunk %d", i), err)
			}
			if err := h.VerifyChunk(i, data); err != nil {
				return err
			}
		}
		if whole != nil {
			whole.Write(data)
		}
		if err := fn(i, data); err != nil {
			return err
		}
	}
	if whole != nil {
		return h.CheckPayloadSum(whole.Sum(nil))
	}
	return nil
}

// VerifyReader verifies a whole bundle streamed from r: header, signature,
// policy (when p is not nil), every chunk, the payload's sha256, and that
// nothing follows the payload.
func VerifyReader(r io.Reader, keys hybrid.Keyring, p *Policy) (*Header, error) {
	h, err := ReadHeader(r, keys)
	if err != nil {
		return nil, err
	}
	if p != nil {
		if err := h.Check(*p); err != nil {
			return nil, err
		}
	}
	if err := h.ReadPayload(r, 0, func(int, []byte) error { return nil }); err != nil {
		return nil, err
	}
	var extra [1]byte
	if n, _ := io.ReadFull(r, extra[:]); n != 0 {
		return nil, fmt.Errorf("%w: data after the payload's last chunk at offset %d", ErrFormat, h.FileSize())
	}
	return h, nil
}

// VerifyFile verifies the bundle file at path in one streaming pass (see
// VerifyReader), for `pqbuild bundle verify`.
func VerifyFile(path string, keys hybrid.Keyring, p *Policy) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h, err := VerifyReader(f, keys, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	const block = 4096
	var z [block]byte
	for len(b) > 0 {
		n := min(len(b), block)
		if !bytes.Equal(b[:n], z[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
