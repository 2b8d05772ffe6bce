package hybrid

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// The key files are parsed member by member rather than with
// json.Unmarshal into a struct, so that a missing, repeated, unknown or
// mistyped member is an error naming the file and the member's JSON path.
// A repeated member matters: two parsers that keep different copies of a
// repeated "ed25519" would disagree about which key is trusted.

// object holds the members of one JSON object, by name.
type object struct {
	file, path string // for errors: the file and the object's JSON path ("" at the top)
	members    map[string]json.RawMessage
}

// decodeObject parses data as exactly one JSON object whose members are all
// in allowed, each at most once, with nothing after it.
func decodeObject(file, path string, data []byte, allowed ...string) (*object, error) {
	o := &object{file: file, path: path, members: map[string]json.RawMessage{}}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, o.invalid(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, o.errorf("", "expected a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, o.invalid(err)
		}
		name := tok.(string) // inside an object the decoder only yields string keys here
		if !contains(allowed, name) {
			return nil, o.errorf(name, "unknown field; expected one of: %s", strings.Join(allowed, ", "))
		}
		if _, dup := o.members[name]; dup {
			return nil, o.errorf(name, "appears twice")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, o.invalid(err)
		}
		o.members[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, o.invalid(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, o.errorf("", "unexpected data after the JSON object")
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// field is the JSON path of member name.
func (o *object) field(name string) string {
	switch {
	case o.path == "":
		return name
	case name == "":
		return o.path
	}
	return o.path + "." + name
}

func (o *object) errorf(name, format string, args ...any) error {
	f := o.field(name)
	if f == "" {
		return fmt.Errorf("%s: %s", o.file, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%s: field %q: %s", o.file, f, fmt.Sprintf(format, args...))
}

func (o *object) invalid(err error) error {
	if o.path == "" {
		return fmt.Errorf("%s: invalid JSON: %w", o.file, err)
	}
	return fmt.Errorf("%s: field %q: invalid JSON: %w", o.file, o.path, err)
}

// raw returns a required member.
func (o *object) raw(name string) (json.RawMessage, error) {
	r, ok := o.members[name]
	if !ok {
		return nil, o.errorf(name, "missing")
	}
	return r, nil
}

func (o *object) string(name string) (string, error) {
	r, err := o.raw(name)
	if err != nil {
		return "", err
	}
	var s string
	if len(r) == 0 || r[0] != '"' || json.Unmarshal(r, &s) != nil {
		return "", o.errorf(name, "is %s; expected a string", short(r))
	}
	return s, nil
}

func (o *object) bool(name string) (bool, error) {
	r, err := o.raw(name)
	if err != nil {
		return false, err
	}
	switch string(r) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, o.errorf(name, "is %s; expected true or false", short(r))
}

// bytes decodes a member holding standard, padded base64 of exactly n
// bytes. Only the canonical encoding is accepted, so one key has one text.
func (o *object) bytes(name string, n int, what string) ([]byte, error) {
	s, err := o.string(name)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		// The value is not quoted: it may be a private seed.
		return nil, o.errorf(name, "is not standard padded base64; expected the %d-byte %s in base64", n, what)
	}
	if len(b) != n {
		return nil, o.errorf(name, "is %d bytes; expected %d (the %s)", len(b), n, what)
	}
	return b, nil
}

// short quotes at most 40 bytes of a value for an error message.
func short(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q...", b[:40])
	}
	return fmt.Sprintf("%q", b)
}

func (o *object) array(name string) ([]json.RawMessage, error) {
	r, err := o.raw(name)
	if err != nil {
		return nil, err
	}
	var a []json.RawMessage
	if len(r) == 0 || r[0] != '[' || json.Unmarshal(r, &a) != nil {
		return nil, o.errorf(name, "is %s; expected an array", short(r))
	}
	return a, nil
}
