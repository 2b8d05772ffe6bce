package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/pqbranch/pqbranch/services/ike/ikeconf"
)

// locate finds where in raw a strict decode into type t fails. encoding/json
// reports unknown fields and text-unmarshaling errors without their path, so
// on the error path we re-decode piece by piece to name the field. It returns
// nil when raw decodes cleanly.
func locate(t reflect.Type, raw json.RawMessage, path string) *FieldError {
	if strictDecode(raw, t) == nil {
		return nil
	}
	pt := reflect.PointerTo(t)
	custom := pt.Implements(reflect.TypeFor[json.Unmarshaler]()) ||
		pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
	if !custom {
		switch t.Kind() {
		case reflect.Pointer:
			return locate(t.Elem(), raw, path)
		case reflect.Struct:
			if f := locateStruct(t, raw, path); f != nil {
				return f
			}
		case reflect.Slice, reflect.Array:
			var items []json.RawMessage
			if json.Unmarshal(raw, &items) == nil {
				for i, it := range items {
					if f := locate(t.Elem(), it, fmt.Sprintf("%s[%d]", path, i)); f != nil {
						return f
					}
				}
			}
		}
	}
	return &FieldError{Field: path, Problem: expected(t, raw)}
}

// addressLike reports whether s may be shown in an error: it looks like an
// address, so it cannot be a key pasted into the wrong field.
func addressLike(s string) bool {
	return len(s) <= 50 && strings.ContainsAny(s, ".:") && strings.Trim(s, "0123456789abcdefABCDEF.:/%") == ""
}

func locateStruct(t reflect.Type, raw json.RawMessage, path string) *FieldError {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil // not an object: reported as a type mismatch by the caller
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	// Report in document order, as a person reads the file.
	slices.SortFunc(keys, func(a, b string) int {
		return bytes.Index(raw, []byte(`"`+a+`"`)) - bytes.Index(raw, []byte(`"`+b+`"`))
	})
	names := fieldNames(t)
	for _, k := range keys {
		i := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, k) })
		if i < 0 {
			return &FieldError{Field: join(path, k), Problem: "unknown field; expected one of: " + strings.Join(names, ", ")}
		}
		sf, _ := fieldByJSONName(t, names[i])
		if f := locate(sf.Type, obj[k], join(path, names[i])); f != nil {
			return f
		}
	}
	return nil
}

func strictDecode(raw json.RawMessage, t reflect.Type) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(reflect.New(t).Interface())
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for sf := range t.Fields() {
		if n := jsonName(sf); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for sf := range t.Fields() {
		if jsonName(sf) == name {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

func jsonName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	switch tag {
	case "-":
		return ""
	case "":
		return sf.Name
	}
	return tag
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expected describes what a field of type t wants, and what it got instead.
// It names only the JSON kind of what was found, never the value: the value
// may be a key.
func expected(t reflect.Type, raw json.RawMessage) string {
	return "expected " + describe(t) + ", got " + jsonKind(raw)
}

func describe(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[ikeconf.Secret]():
		return "a string"
	case reflect.TypeFor[netip.Prefix]():
		return `an address prefix string like "198.18.1.1/24"`
	case reflect.TypeFor[netip.Addr]():
		return `an IP address string like "192.0.2.1"`
	case reflect.TypeFor[ikeconf.KEList]():
		return `a group name like "x25519" or a list of them`
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Slice, reflect.Array:
		// "a list of strings", not "a list of a strings".
		elem := describe(t.Elem())
		for _, article := range []string{"a ", "an "} {
			elem = strings.TrimPrefix(elem, article)
		}
		return "a list of " + elem + "s"
	case reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}

func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '"':
		var s string
		// Address-like fields show the offending text; anything else (a
		// pre-shared key in the wrong place) stays hidden.
		if json.Unmarshal(raw, &s) == nil && addressLike(s) {
			return fmt.Sprintf("%q", s)
		}
		return "a string"
	}
	return "a number"
}
