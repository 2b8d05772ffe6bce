package bundle

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

// Write streams a bundle of the size-byte payload into w, signed with key,
// in chunks of DefaultChunkSize. See WriteChunkSize.
func Write(w io.Writer, rel release.Release, payload io.ReaderAt, size int64, key *hybrid.PrivateKey) (Manifest, error) {
	return WriteChunkSize(w, rel, payload, size, DefaultChunkSize, key)
}

// WriteChunkSize writes a bundle with the given chunk size. The manifest
// precedes the payload, so the payload is read twice, a chunk at a time:
// once to hash it, once to copy the stored chunks, each re-hashed so a
// payload that changes in between fails the build instead of shipping a
// bundle that no device accepts. Memory is one chunk.
//
// rel.BuildID, when empty, is set to the payload's sha256; when set, it
// must equal it. The caller sets rel.DevKey when key is a development key:
// devices reject a development key's signature on anything else.
func WriteChunkSize(w io.Writer, rel release.Release, payload io.ReaderAt, size int64, chunkSize int, key *hybrid.PrivateKey) (Manifest, error) {
	if key == nil {
		return Manifest{}, errors.New("bundle: write: no signing key")
	}
	if size <= 0 {
		return Manifest{}, fmt.Errorf("bundle: write: payload size is %d; expected a positive size", size)
	}
	if err := checkChunkSize(chunkSize); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: chunk size %v", err)
	}
	if err := rel.Validate("bundle: write: release"); err != nil {
		return Manifest{}, err
	}

	m := Manifest{Format: Format, Suite: key.Suite(), Release: rel, Payload: Payload{Size: size, ChunkSize: chunkSize}}
	n := int((size + int64(chunkSize) - 1) / int64(chunkSize))
	buf := make([]byte, chunkSize)
	whole := sha256.New()
	for i := range n {
		data, err := readChunk(payload, &m.Payload, i, buf)
		if err != nil {
			return Manifest{}, err
		}
		whole.Write(data)
		sum := sha256.Sum256(data)
		m.Payload.Chunks = append(m.Payload.Chunks, Chunk{SHA256: hex.EncodeToString(sum[:]), Zero: isZero(data)})
	}
	m.Payload.SHA256 = hex.EncodeToString(whole.Sum(nil))
	switch m.Release.BuildID {
	case "":
		m.Release.BuildID = m.Payload.SHA256
	case m.Payload.SHA256:
	default:
		return Manifest{}, fmt.Errorf("bundle: write: release build_id is %s but the payload's sha256 is %s", m.Release.BuildID, m.Payload.SHA256)
	}

	mb, err := marshalManifest(&m)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: manifest: %w", err)
	}
	header, err := signedHeader(mb, key)
	if err != nil {
		return Manifest{}, err
	}
	if _, err := w.Write(header); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: header: %w", err)
	}
	for i, c := range m.Payload.Chunks {
		if c.Zero {
			continue
		}
		data, err := readChunk(payload, &m.Payload, i, buf)
		if err != nil {
			return Manifest{}, err
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != c.SHA256 {
			return Manifest{}, fmt.Errorf("bundle: write: payload chunk %d changed between the hashing pass and the copy", i)
		}
		if _, err := w.Write(data); err != nil {
			return Manifest{}, fmt.Errorf("bundle: write: chunk %d: %w", i, err)
		}
	}
	return m, nil
}

// readChunk reads chunk i of the payload into buf.
func readChunk(r io.ReaderAt, p *Payload, i int, buf []byte) ([]byte, error) {
	data := buf[:p.chunkLen(i)]
	off := int64(i) * int64(p.ChunkSize)
	if _, err := io.ReadFull(io.NewSectionReader(r, off, int64(len(data))), data); err != nil {
		return nil, fmt.Errorf("bundle: write: reading payload chunk %d at offset %d: %w", i, off, err)
	}
	return data, nil
}

// signedHeader frames the manifest bytes and signs frame || manifest. The frame
// holds the signature block's length, which the signature covers, so the
// block's length is fixed before signing: the suite fixes the signature's
// length and so the block's.
func signedHeader(mb []byte, key *hybrid.PrivateKey) ([]byte, error) {
	if len(mb) > MaxManifest {
		return nil, fmt.Errorf("bundle: write: manifest is %d bytes; the format allows %d (use a larger chunk size)", len(mb), MaxManifest)
	}
	sigSize, err := key.Suite().SignatureSize()
	if err != nil {
		return nil, fmt.Errorf("bundle: write: %w", err)
	}
	sig := Signature{KeyID: key.Public().ID(), Suite: key.Suite(), Sig: make([]byte, sigSize)}
	placeholder, err := json.Marshal(sig)
	if err != nil {
		return nil, fmt.Errorf("bundle: write: signature block: %w", err)
	}
	if len(placeholder) > MaxSignature {
		return nil, fmt.Errorf("bundle: write: signature block is %d bytes; the format allows %d", len(placeholder), MaxSignature)
	}

	h := make([]byte, frameSize, frameSize+len(mb)+len(placeholder))
	copy(h, Magic)
	binary.BigEndian.PutUint32(h[8:], Format)
	binary.BigEndian.PutUint32(h[12:], uint32(len(mb)))
	binary.BigEndian.PutUint32(h[16:], uint32(len(placeholder)))
	h = append(h, mb...)

	if sig.Sig, err = key.Sign(h); err != nil {
		return nil, fmt.Errorf("bundle: write: signing: %w", err)
	}
	block, err := json.Marshal(sig)
	if err != nil {
		return nil, fmt.Errorf("bundle: write: signature block: %w", err)
	}
	if len(block) != len(placeholder) {
		return nil, fmt.Errorf("bundle: write: signature block is %d bytes; the signed frame says %d", len(block), len(placeholder))
	}
	return append(h, block...), nil
}
