// Package syslog forwards the appliance log to a remote collector as RFC 5424
// messages, over UDP (one message per datagram, RFC 5426) or TCP (octet
// counting framing, RFC 6587), for fleets that collect logs centrally.
//
// A Forwarder owns a bounded queue that its slog handler fills without ever
// waiting on the network: when the collector is slow or down the oldest
// queued record is dropped and counted, and the next message sent says how
// many were lost. Forwarder.Run sends to one destination until its context
// ends; the appliance runs it as a supervised service, so a new config
// restarts it with the new destination while the queue carries over.
package syslog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Facility is the RFC 5424 facility code, 0..23.
type Facility uint8

// The facilities by their usual names (RFC 5424 section 6.2.1).
const (
	Kern Facility = iota
	User
	Mail
	Daemon
	Auth
	Syslog
	LPR
	News
	UUCP
	Cron
	AuthPriv
	FTP
	Local0 Facility = iota + 4
	Local1
	Local2
	Local3
	Local4
	Local5
	Local6
	Local7
)

var facilityNames = map[Facility]string{
	Kern: "kern", User: "user", Mail: "mail", Daemon: "daemon", Auth: "auth", Syslog: "syslog",
	LPR: "lpr", News: "news", UUCP: "uucp", Cron: "cron", AuthPriv: "authpriv", FTP: "ftp",
	Local0: "local0", Local1: "local1", Local2: "local2", Local3: "local3",
	Local4: "local4", Local5: "local5", Local6: "local6", Local7: "local7",
}

func (f Facility) String() string {
	if n, ok := facilityNames[f]; ok {
		return n
	}
	return "facility(" + strconv.Itoa(int(f)) + ")"
}

// FacilityNames lists the names ParseFacility accepts, in code order.
func FacilityNames() []string {
	var names []string
	for f := Kern; f <= Local7; f++ {
		if n, ok := facilityNames[f]; ok {
			names = append(names, n)
		}
	}
	return names
}

// ParseFacility returns the facility named s, e.g. "local0" or "daemon".
func ParseFacility(s string) (Facility, error) {
	for f, n := range facilityNames {
		if n == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("syslog: unknown facility %q, expected one of %s", s, strings.Join(FacilityNames(), ", "))
}

// Severity is the RFC 5424 severity, 0 (emergency) .. 7 (debug).
type Severity uint8

// The severities (RFC 5424 section 6.2.1).
const (
	Emergency Severity = iota
	Alert
	Critical
	Error
	Warning
	Notice
	Info
	Debug
)

var severityNames = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// Priority is the PRI value: facility * 8 + severity (RFC 5424 section 6.2.1).
func Priority(f Facility, s Severity) int { return int(f)*8 + int(s) }

// Limits of the header fields (RFC 5424 section 6) and of SD-NAMEs.
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
	maxSDName   = 32
	// MinMessageSize is the smallest size limit Append honours: the
	// header fields alone may take 502 bytes. (Every receiver accepts 480
	// bytes, and should accept 2048, RFC 5424 section 6.1.)
	MinMessageSize = 1024
)

// nilValue stands for an empty header field or no structured data.
const nilValue = "-"

// Message is one RFC 5424 syslog message.
type Message struct {
	Facility Facility
	Severity Severity
	Time     time.Time // zero: NILVALUE
	Hostname string
	AppName  string
	ProcID   string
	MsgID    string
	Data     []Element // structured data; none: NILVALUE
	Msg      string    // free text, sent as UTF-8 without a BOM
}

// Element is one SD-ELEMENT, e.g. [meta sequenceId="7"].
type Element struct {
	ID     string
	Params []Param
}

// Param is one SD-PARAM.
type Param struct {
	Name, Value string
}

// Append appends m in the RFC 5424 syntax to b, at most limit bytes of it
// (a limit below MinMessageSize counts as MinMessageSize). An overlong message loses
// the end of its MSG, cut at a UTF-8 character boundary; if header and
// structured data alone do not fit, the structured data is left out.
// Header fields are made to fit their grammar: characters outside
// PRINTUSASCII become '_' and each is cut to its length limit.
func (m *Message) Append(b []byte, limit int) []byte {
	limit = max(limit, MinMessageSize)
	start := len(b)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(Priority(m.Facility, m.Severity)), 10)
	b = append(b, ">1 "...)
	b = appendTimestamp(b, m.Time)
	b = append(b, ' ')
	b = appendHeaderField(b, m.Hostname, maxHostname)
	b = append(b, ' ')
	b = appendHeaderField(b, m.AppName, maxAppName)
	b = append(b, ' ')
	b = appendHeaderField(b, m.ProcID, maxProcID)
	b = append(b, ' ')
	b = appendHeaderField(b, m.MsgID, maxMsgID)
	b = append(b, ' ')
	header := len(b)
	b = appendData(b, m.Data)
	if len(b)-start > limit-1 { // the SD does not fit with even an empty MSG
		b = append(b[:header], nilValue...)
	}
	if m.Msg == "" {
		return b
	}
	// MSG-ANY must not start with a BOM (that would make it MSG-UTF8), so
	// every leading one goes; a collector should not have to cope with
	// invalid UTF-8.
	msg := strings.ToValidUTF8(strings.TrimLeft(m.Msg, "\uFEFF"), "\uFFFD")
	room := limit - (len(b) - start) - 1
	if room <= 0 {
		return b
	}
	b = append(b, ' ')
	return append(b, truncateUTF8(msg, room)...)
}

func appendTimestamp(b []byte, t time.Time) []byte {
	if t.IsZero() || t.Year() < 0 || t.Year() > 9999 {
		return append(b, nilValue...)
	}
	// TIME-SECFRAC allows at most six digits; UTC avoids zone arithmetic
	// at the collector.
	return t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
}

// appendHeaderField appends s as a header field: 1*n PRINTUSASCII, or
// NILVALUE when empty.
func appendHeaderField(b []byte, s string, n int) []byte {
	if s == "" {
		return append(b, nilValue...)
	}
	for i := 0; i < len(s) && i < n; i++ {
		b = append(b, printable(s[i], false))
	}
	return b
}

// printable maps c into PRINTUSASCII (33..126); sdName also excludes the
// characters an SD-NAME must not contain: '=', ']' and '"'.
func printable(c byte, sdName bool) byte {
	if c < 33 || c > 126 || sdName && (c == '=' || c == ']' || c == '"') {
		return '_'
	}
	return c
}

func appendData(b []byte, data []Element) []byte {
	if len(data) == 0 {
		return append(b, nilValue...)
	}
	for _, e := range data {
		b = append(b, '[')
		b = appendSDName(b, e.ID)
		for _, p := range e.Params {
			b = append(b, ' ')
			b = appendSDName(b, p.Name)
			b = append(b, '=', '"')
			b = appendParamValue(b, p.Value)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	return b
}

func appendSDName(b []byte, s string) []byte {
	if s == "" {
		return append(b, '_')
	}
	for i := 0; i < len(s) && i < maxSDName; i++ {
		b = append(b, printable(s[i], true))
	}
	return b
}

// appendParamValue escapes the three characters PARAM-VALUE reserves
// ('"', '\' and ']', RFC 5424 section 6.3.3) with a backslash.
func appendParamValue(b []byte, s string) []byte {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// truncateUTF8 returns at most n bytes of s, not splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
