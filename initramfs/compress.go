package initramfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compress compresses an archive with zstd and with xz, both of which
// Debian's kernel reads, and returns the smaller and its name. Both encoders
// run single-threaded with fixed settings, so the output is reproducible.
func Compress(raw []byte) ([]byte, string, error) {
	type result struct {
		b   []byte
		err error
	}
	zc, xc := make(chan result, 1), make(chan result, 1)
	go func() { b, err := Zstd(raw); zc <- result{b, err} }()
	go func() { b, err := XZ(raw); xc <- result{b, err} }()
	z, x := <-zc, <-xc
	if z.err != nil {
		return nil, "", z.err
	}
	if x.err != nil {
		return nil, "", x.err
	}
	if len(x.b) < len(z.b) {
		return x.b, "xz", nil
	}
	return z.b, "zstd", nil
}

// CompressCached is Compress with the result kept in cacheDir by the
// archive's sha256, for the initramfs segment that rarely changes.
func CompressCached(cacheDir string, raw []byte) ([]byte, string, error) {
	sum := sha256.Sum256(raw)
	dir := filepath.Join(cacheDir, "initramfs")
	key := hex.EncodeToString(sum[:16])
	for _, name := range []string{"zstd", "xz"} {
		if b, err := os.ReadFile(filepath.Join(dir, key+"."+name)); err == nil {
			return b, name, nil
		}
	}
	b, name, err := Compress(raw)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	tmp, err := os.CreateTemp(dir, key+".tmp-")
	if err != nil {
		return nil, "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, "", err
	}
	if err := tmp.Close(); err != nil {
		return nil, "", err
	}
	return b, name, os.Rename(tmp.Name(), filepath.Join(dir, key+"."+name))
}

// Zstd compresses at the best level.
func Zstd(raw []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1),
		// The kernel's decompressor is bounded in window size.
		zstd.WithWindowSize(8<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return enc.EncodeAll(raw, nil), nil
}

// XZ compresses with CRC32 checks: the kernel's xz decoder supports no
// other.
func XZ(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(&buf)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return buf.Bytes(), nil
}
