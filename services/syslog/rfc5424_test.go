package syslog

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// parsed is a message as a collector reads it.
type parsed struct {
	Message
	Version int
}

// parse5424 checks b against the RFC 5424 ABNF (section 6) and returns what
// it holds. It is strict where the forwarder promises more than the RFC
// asks: a backslash in a PARAM-VALUE must escape '"', '\' or ']', and the
// timestamp must be UTC.
func parse5424(b []byte) (parsed, error) {
	var p parsed
	whole := string(b)
	s := whole
	fail := func(format string, a ...any) (parsed, error) {
		return parsed{}, fmt.Errorf("rfc5424: "+format+" in %q", append(a, whole)...)
	}
	// PRI = "<" PRIVAL ">", PRIVAL = 1*3DIGIT, 0..191, no leading zero.
	if !strings.HasPrefix(s, "<") {
		return fail("no PRI")
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return fail("PRIVAL of %d digits", end-1)
	}
	digits := s[1:end]
	pri, err := strconv.Atoi(digits)
	if err != nil || pri < 0 || pri > 191 || len(digits) > 1 && digits[0] == '0' || strings.Trim(digits, "0123456789") != "" {
		return fail("PRIVAL %q", digits)
	}
	p.Facility, p.Severity = Facility(pri/8), Severity(pri%8)
	s = s[end+1:]
	// VERSION = NONZERO-DIGIT 0*2DIGIT
	ver, rest, ok := strings.Cut(s, " ")
	if !ok || ver == "" || ver[0] == '0' || len(ver) > 3 || strings.Trim(ver, "0123456789") != "" {
		return fail("VERSION %q", ver)
	}
	p.Version, _ = strconv.Atoi(ver)
	s = rest
	field := func(name string, maxLen int) (string, error) {
		v, rest, ok := strings.Cut(s, " ")
		if !ok {
			return "", fmt.Errorf("rfc5424: %s not followed by SP", name)
		}
		if v == "" || len(v) > maxLen {
			return "", fmt.Errorf("rfc5424: %s of %d characters, expected 1..%d", name, len(v), maxLen)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 33 || v[i] > 126 {
				return "", fmt.Errorf("rfc5424: %s has byte %#x outside PRINTUSASCII", name, v[i])
			}
		}
		s = rest
		if v == nilValue {
			return "", nil
		}
		return v, nil
	}
	ts, err := field("TIMESTAMP", 32)
	if err != nil {
		return fail("%v", err)
	}
	if ts != "" {
		// FULL-DATE "T" FULL-TIME with 1..6 TIME-SECFRAC digits; we send UTC.
		t, err := time.Parse("2006-01-02T15:04:05.999999Z", ts)
		if err != nil || len(ts) > len("2006-01-02T15:04:05.000000Z") {
			return fail("TIMESTAMP %q: %v", ts, err)
		}
		p.Time = t
	}
	for _, f := range []struct {
		name string
		max  int
		dst  *string
	}{{"HOSTNAME", 255, &p.Hostname}, {"APP-NAME", 48, &p.AppName}, {"PROCID", 128, &p.ProcID}, {"MSGID", 32, &p.MsgID}} {
		if *f.dst, err = field(f.name, f.max); err != nil {
			return fail("%v", err)
		}
	}
	// STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
	if strings.HasPrefix(s, nilValue) {
		s = s[1:]
	} else {
		if !strings.HasPrefix(s, "[") {
			return fail("STRUCTURED-DATA neither NILVALUE nor an SD-ELEMENT")
		}
		for strings.HasPrefix(s, "[") {
			var e Element
			s = s[1:]
			if e.ID, s, err = sdName(s); err != nil {
				return fail("SD-ID: %v", err)
			}
			for strings.HasPrefix(s, " ") {
				var prm Param
				if prm.Name, s, err = sdName(s[1:]); err != nil {
					return fail("PARAM-NAME: %v", err)
				}
				if !strings.HasPrefix(s, `="`) {
					return fail(`PARAM-NAME not followed by ="`)
				}
				if prm.Value, s, err = paramValue(s[2:]); err != nil {
					return fail("PARAM-VALUE: %v", err)
				}
				e.Params = append(e.Params, prm)
			}
			if !strings.HasPrefix(s, "]") {
				return fail("SD-ELEMENT not closed")
			}
			s = s[1:]
			p.Data = append(p.Data, e)
		}
	}
	// [SP MSG]; MSG-ANY must not start with a BOM, and we send UTF-8.
	if s == "" {
		return p, nil
	}
	if !strings.HasPrefix(s, " ") {
		return fail("STRUCTURED-DATA not followed by SP or the end")
	}
	p.Msg = s[1:]
	if strings.HasPrefix(p.Msg, "\uFEFF") || !utf8.ValidString(p.Msg) {
		return fail("MSG with a BOM or invalid UTF-8")
	}
	return p, nil
}

// sdName reads an SD-NAME: 1*32 PRINTUSASCII except '=', SP, ']', '"'.
func sdName(s string) (name, rest string, err error) {
	i := 0
	for i < len(s) && s[i] >= 33 && s[i] <= 126 && s[i] != '=' && s[i] != ']' && s[i] != '"' {
		i++
	}
	if i == 0 || i > maxSDName {
		return "", "", fmt.Errorf("SD-NAME of %d characters, expected 1..%d", i, maxSDName)
	}
	return s[:i], s[i:], nil
}

// paramValue reads an escaped PARAM-VALUE up to its closing quote.
func paramValue(s string) (value, rest string, err error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			if !utf8.ValidString(b.String()) {
				return "", "", fmt.Errorf("invalid UTF-8")
			}
			return b.String(), s[i+1:], nil
		case ']':
			return "", "", fmt.Errorf("unescaped ']'")
		case '\\':
			if i+1 == len(s) || !strings.ContainsRune(`"\]`, rune(s[i+1])) {
				return "", "", fmt.Errorf("backslash escapes nothing")
			}
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("no closing quote")
}

// readFrame reads one RFC 6587 octet-counted frame: MSG-LEN SP SYSLOG-MSG.
func readFrame(r *bufio.Reader) ([]byte, error) {
	lenText, err := r.ReadString(' ')
	if err != nil {
		return nil, err
	}
	lenText = strings.TrimSuffix(lenText, " ")
	n, err := strconv.Atoi(lenText)
	if err != nil || n < 1 || lenText[0] == '0' {
		return nil, fmt.Errorf("MSG-LEN %q", lenText)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
