// Package bundle reads and writes update bundles (update.pqb, format 1): a
// fixed 20-byte frame, a signed JSON manifest, the signature block, and the
// payload, one slot image cut into fixed-size chunks.
//
//	offset 0   "PQBUNDLE"           8 bytes magic
//	       8   uint32 BE format      = 1
//	      12   uint32 BE manifest length M   (≤ 1 MiB)
//	      16   uint32 BE signature length S  (≤ 64 KiB)
//	      20   manifest             M bytes, JSON (Manifest)
//	   20+M    signature            S bytes, JSON (Signature)
//	 20+M+S    payload: the stored chunks in order; chunks marked "zero" are not stored
//
// The composite signature covers the frame and the manifest, and the
// manifest lists the SHA-256 of every chunk, so a device authenticates each
// chunk on its own as it streams in, with memory bounded by one chunk, and
// can resume a download at any chunk.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

// Format constants.
const (
	Magic            = "PQBUNDLE"
	Format           = 1
	DefaultChunkSize = 1 << 20

	// MaxManifest and MaxSignature bound what a reader allocates before
	// the signature is checked.
	MaxManifest  = 1 << 20
	MaxSignature = 64 << 10

	// MinChunkSize and MaxChunkSize bound the chunk size, a power of two.
	MinChunkSize = 64 << 10
	MaxChunkSize = 16 << 20

	frameSize = 20 // magic, format, M, S
)

// Errors, for errors.Is; each is wrapped with the detail.
var (
	ErrFormat          = errors.New("malformed bundle")
	ErrTruncated       = errors.New("bundle is truncated")
	ErrSignature       = errors.New("bundle signature does not verify")
	ErrUnsigned        = errors.New("bundle is unsigned")
	ErrUnknownKey      = errors.New("bundle is signed by a key this device does not trust")
	ErrChunk           = errors.New("payload chunk does not match the manifest")
	ErrPayload         = errors.New("payload does not match the manifest's sha256")
	ErrBoard           = errors.New("bundle is for another board")
	ErrSecurityVersion = errors.New("bundle security version is below the device's floor")
	// ErrUnverified: the header came from Inspect, whose signature was not
	// checked; nothing may be decided or verified against it.
	ErrUnverified = errors.New("bundle header is not verified")
)

// Manifest is the signed description of a bundle.
type Manifest struct {
	Format  int             `json:"format"`
	Suite   hybrid.Suite    `json:"suite"`
	Release release.Release `json:"release"`
	Payload Payload         `json:"payload"`
}

// Payload describes the slot image and its chunks.
type Payload struct {
	Size      int64   `json:"size"`
	ChunkSize int     `json:"chunk_size"`
	SHA256    string  `json:"sha256"` // of the whole payload, zero chunks included
	Chunks    []Chunk `json:"chunks"`
}

// Chunk is one chunk of the payload. A zero chunk is all zero bytes and is
// not stored in the file; its SHA256 is still that of its zero bytes.
type Chunk struct {
	SHA256 string `json:"sha256"`
	Zero   bool   `json:"zero,omitempty"`
}

// Signature is the signature block.
type Signature struct {
	KeyID string       `json:"key_id"`
	Suite hybrid.Suite `json:"suite"`
	Sig   []byte       `json:"sig"`
}

// Policy is what a device requires of a bundle beyond a good signature.
type Policy struct {
	Board         string // the running board: required
	SecurityFloor uint64 // the lowest security version the device accepts
}

// Trust says whether a header's signature was checked.
type Trust uint8

const (
	// Unverified: from Inspect; shown to people, never acted on.
	Unverified Trust = iota
	// Verified: the composite signature checked against a trusted key.
	Verified
)

func (t Trust) String() string {
	switch t {
	case Unverified:
		return "unverified"
	case Verified:
		return "verified"
	}
	return fmt.Sprintf("Trust(%d)", uint8(t))
}

// chunkLen is the payload length of chunk i of a payload (the last may be
// short). It depends only on Size and ChunkSize, so the writer can use
// it while it builds Chunks.
func (p *Payload) chunkLen(i int) int {
	return int(min(int64(p.ChunkSize), p.Size-int64(i)*int64(p.ChunkSize)))
}

// zeroHash is the hex SHA-256 of n zero bytes.
func zeroHash(n int) string {
	h := sha256.New()
	var z [4096]byte
	for n > 0 {
		m := min(n, len(z))
		h.Write(z[:m])
		n -= m
	}
	return hex.EncodeToString(h.Sum(nil))
}
