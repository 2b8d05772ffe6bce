// Package debpkg fetches pinned Debian packages with apt into the build
// cache, verifies them by sha256 and unpacks them. A verified package is never
// downloaded again.
package debpkg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Pin names one package version and its expected sha256.
type Pin struct {
	Package, Version, SHA256 string
	// Field names the pin's sha256 in its source file, for errors.
	Field string
}

// Fetch returns the path of the pinned package in cacheDir/deb, downloading
// it with apt-get when it is not there yet. progress receives apt's output.
func Fetch(ctx context.Context, cacheDir string, pin Pin, progress io.Writer) (string, error) {
	dir := filepath.Join(cacheDir, "deb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s_%s_amd64.deb", pin.Package, strings.ReplaceAll(pin.Version, ":", "%3a")))
	if _, err := os.Stat(path); err == nil {
		return path, verify(path, pin)
	}
	tmp, err := os.MkdirTemp(dir, "download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(progress, "fetching %s %s with apt\n", pin.Package, pin.Version)
	if err := aptDownload(ctx, tmp, pin, progress); err != nil {
		return "", err
	}
	got, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(got) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left %d files", pin.Package, pin.Version, len(got))
	}
	// Verify before publishing, so the cache only ever holds a package that
	// matched some pin; a wrong pin does not poison it.
	if err := verify(got[0], pin); err != nil {
		return "", err
	}
	return path, os.Rename(got[0], path)
}

func aptDownload(ctx context.Context, dir string, pin Pin, progress io.Writer) error {
	download := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pin.Package+"="+pin.Version)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout = io.MultiWriter(progress, &out)
		cmd.Stderr = &out
		return out.Bytes(), cmd.Run()
	}
	out, err := download()
	if err == nil {
		return nil
	}
	// A fresh machine's package lists may predate the pinned version.
	fmt.Fprintf(progress, "apt-get download failed; updating the package lists once\n")
	if upd, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
		return fmt.Errorf("apt-get update: %w: %s", uerr, lastLines(upd))
	}
	if out, err = download(); err != nil {
		return fmt.Errorf("apt-get download %s=%s: %w: %s", pin.Package, pin.Version, err, lastLines(out))
	}
	return nil
}

func verify(path string, pin Pin) error {
	sum, err := FileSHA256(path)
	if err != nil {
		return err
	}
	if sum != pin.SHA256 {
		return fmt.Errorf("%s: sha256 of %s %s is %s; expected %s", pin.Field, pin.Package, pin.Version, sum, pin.SHA256)
	}
	return nil
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Unpack extracts deb into cacheDir/root/<sha256> once and returns that
// directory. It unpacks into a temporary directory first, so a half-unpacked
// tree is never used.
func Unpack(ctx context.Context, cacheDir, deb, sha string) (string, error) {
	dst := filepath.Join(cacheDir, "root", sha)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "unpack-")
	if err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, lastLines(out))
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return dst, nil
}

func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "; ")
}
