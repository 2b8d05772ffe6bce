package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strings"
)

// maxSize bounds what Load reads: a config is a few kilobytes, and the file
// sits on a partition an attacker with LAN access must not fill our memory from.
const maxSize = 1 << 20

// A Check is a rule the config must pass besides the validator's own; its
// problems are reported with the validator's, in the same *Error. The
// appliance adds one in a dev test image that must refuse every config
// (release.FaultRejectConfig), so the refusal takes the real path.
type Check func(*Config) []FieldError

// Load reads, decodes and validates the file at path, with checks after the
// validator's own. Any problem yields an *Error naming the file and the
// field; the caller keeps its previous config.
func Load(path string, checks ...Check) (*Config, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if fi.Size() > maxSize {
		return nil, &Error{File: path, Fields: []FieldError{{Problem: fmt.Sprintf("file is %d bytes, expected at most %d", fi.Size(), maxSize)}}}
	}
	// The file holds pre-shared keys: tighten a too open mode rather than
	// refuse it, so a copy with the wrong umask cannot brick the appliance.
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("config: restrict %s to 0600: %w", path, err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, b, checks...)
}

// Parse decodes and validates b, with checks after the validator's own;
// name is used in error messages.
func Parse(name string, b []byte, checks ...Check) (*Config, error) {
	var c Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, &Error{File: name, Fields: []FieldError{decodeProblem(b, err)}}
	}
	if d.More() {
		off := d.InputOffset()
		line, col := position(b, off)
		return nil, &Error{File: name, Fields: []FieldError{{Problem: "unexpected data after the JSON object, expected the end of the file", Line: line, Column: col, isSyntax: true}}}
	}
	p := c.validate()
	for _, check := range checks {
		p = append(p, check(&c)...)
	}
	if len(p) > 0 {
		return nil, &Error{File: name, Fields: p}
	}
	return &c, nil
}

func decodeProblem(b []byte, err error) FieldError {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Offset counts the offending byte as read; point at it.
		line, col := position(b, max(syn.Offset-1, 0))
		return FieldError{Problem: "invalid JSON: " + withoutCharacter(syn.Error()), Line: line, Column: col, isSyntax: true}
	}
	if f := locate(reflect.TypeFor[Config](), b, ""); f != nil {
		if f.Field == "" {
			f.Problem = "the file must hold one JSON object: " + f.Problem
		}
		return *f
	}
	// locate decodes the same way, so it finds every error Decode finds;
	// this is a safety net that still names the file.
	return FieldError{Problem: err.Error()}
}

// quotedChar is the offending character encoding/json quotes in a syntax
// error: 'x', '\”, '"', '\n', '\u00e9' and the like.
var quotedChar = regexp.MustCompile(`'(\\'|[^']*)' ?`)

// withoutCharacter drops the offending character from a JSON syntax error:
// it may be one of the PSK's (an unescaped quote or a tab inside it), and the
// message is shown on the console and the status page. Line and column say
// where it is.
func withoutCharacter(msg string) string {
	return strings.TrimSpace(quotedChar.ReplaceAllString(msg, ""))
}

// position turns a byte offset into a 1-based line and column.
func position(b []byte, off int64) (line, col int) {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}
