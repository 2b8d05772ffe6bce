// Package sk protects IKE messages: the Encrypted payload (RFC 7296 3.14)
// with AES-GCM-16 (RFC 5282), and its fragmented form (RFC 7383) including
// reassembly.
package sk

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	ivLen  = 8
	icvLen = 16
	// Overhead is what protection adds to the inner payloads: IV, ICV and
	// the Pad Length byte (AES-GCM needs no padding).
	Overhead = ivLen + icvLen + 1
)

// Cipher protects one direction of an IKE SA with AES-GCM-16.
type Cipher struct {
	aead cipher.AEAD
	salt [4]byte
	seq  uint64 // explicit IV; a counter never repeats under one key
}

// ErrAuth reports a message whose ICV does not verify.
var ErrAuth = errors.New("message authentication failed")

// NewCipher takes SK_e[ir]: the AES key followed by the 4-byte salt.
func NewCipher(key []byte) (*Cipher, error) {
	switch len(key) {
	case 16 + 4, 24 + 4, 32 + 4:
	default:
		return nil, fmt.Errorf("AES-GCM key with salt must be 20, 28 or 36 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key[:len(key)-4])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	c := &Cipher{aead: aead}
	copy(c.salt[:], key[len(key)-4:])
	return c, nil
}

// seal returns IV | ciphertext | ICV for plain (without Pad Length) under aad.
func (c *Cipher) seal(aad, plain []byte) []byte {
	c.seq++
	var nonce [12]byte
	copy(nonce[:], c.salt[:])
	binary.BigEndian.PutUint64(nonce[4:], c.seq)
	out := append(make([]byte, 0, ivLen+len(plain)+1+icvLen), nonce[4:]...)
	padded := append(append(make([]byte, 0, len(plain)+1), plain...), 0) // Pad Length 0
	return c.aead.Seal(out, nonce[:], padded, aad)
}

// open reverses seal and strips the padding.
func (c *Cipher) open(aad, body []byte) ([]byte, error) {
	if len(body) < ivLen+1+icvLen {
		return nil, fmt.Errorf("encrypted payload of %d bytes too short", len(body))
	}
	var nonce [12]byte
	copy(nonce[:], c.salt[:])
	copy(nonce[4:], body[:ivLen])
	plain, err := c.aead.Open(nil, nonce[:], body[ivLen:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, fmt.Errorf("pad length %d exceeds plaintext", pad)
	}
	return plain[:len(plain)-1-pad], nil
}
