package syslog

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 11, 30, 7, 19, 53, 123456789, time.UTC)

func TestMessageFormat(t *testing.T) {
	base := func(edit func(m *Message)) Message {
		m := Message{Facility: Local0, Severity: Info, Time: t0, Hostname: "branch-7", AppName: "tunnel", ProcID: "1", Msg: "tunnel established"}
		edit(&m)
		return m
	}
	cases := []struct {
		name string
		m    Message
		want string
	}{
		{"local0 info", base(func(*Message) {}),
			`<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - tunnel established`},
		{"kern emerg is PRI 0", base(func(m *Message) { m.Facility, m.Severity = Kern, Emergency }),
			`<0>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - tunnel established`},
		{"local7 debug is PRI 191", base(func(m *Message) { m.Facility, m.Severity = Local7, Debug }),
			`<191>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - tunnel established`},
		{"daemon warning", base(func(m *Message) { m.Facility, m.Severity = Daemon, Warning }),
			`<28>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - tunnel established`},
		{"nil values and no MSG", Message{Facility: User, Severity: Notice},
			`<13>1 - - - - - -`},
		{"zone converted to UTC", base(func(m *Message) { m.Time = time.Date(2026, 11, 30, 9, 0, 0, 5000, time.FixedZone("CEST", 2*3600)) }),
			`<134>1 2026-11-30T07:00:00.000005Z branch-7 tunnel 1 - - tunnel established`},
		{"structured data", base(func(m *Message) {
			m.MsgID = "IKE"
			m.Data = []Element{{ID: "meta", Params: []Param{{"sequenceId", "7"}}}, {ID: "origin"}}
		}), `<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 IKE [meta sequenceId="7"][origin] tunnel established`},
		{"param value escaping", base(func(m *Message) {
			m.Data = []Element{{ID: "x@32473", Params: []Param{{"v", `a"b\c]d[e`}, {"u", "grüße"}}}}
		}), `<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - [x@32473 v="a\"b\\c\]d[e" u="grüße"] tunnel established`},
		{"invalid UTF-8 in a param value", base(func(m *Message) { m.Data = []Element{{ID: "x", Params: []Param{{"v", "a\xffb"}}}} }),
			"<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - [x v=\"a\uFFFDb\"] tunnel established"},
		{"SD-NAME characters", base(func(m *Message) { m.Data = []Element{{ID: `a b=c]d"e`, Params: []Param{{"", "v"}}}} }),
			`<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - [a_b_c_d_e _="v"] tunnel established`},
		{"header fields outside PRINTUSASCII", base(func(m *Message) { m.Hostname, m.AppName = "bad host", "dh\tcp\u00e9" }),
			`<134>1 2026-11-30T07:19:53.123456Z bad_host dh_cp__ 1 - - tunnel established`},
		{"BOM stripped from MSG", base(func(m *Message) { m.Msg = "\uFEFFhello" }),
			`<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - hello`},
		{"every leading BOM stripped from MSG", base(func(m *Message) { m.Msg = "\uFEFF\uFEFFhello" }),
			`<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - hello`},
		{"invalid UTF-8 in MSG", base(func(m *Message) { m.Msg = "a\xc3b" }),
			"<134>1 2026-11-30T07:19:53.123456Z branch-7 tunnel 1 - - a\uFFFDb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(tc.m.Append(nil, 2048))
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if _, err := parse5424([]byte(got)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// What the formatter sends reads back, by the RFC's grammar, as what it was
// given.
func TestMessageRoundTrip(t *testing.T) {
	m := Message{Facility: Local3, Severity: Error, Time: t0.Truncate(time.Microsecond), Hostname: "branch-7", AppName: "dhcp", ProcID: "1", MsgID: "LEASE",
		Data: []Element{{ID: "meta", Params: []Param{{"sequenceId", "42"}}}, {ID: "lease@32473", Params: []Param{{"mac", "52:54:00:12:34:56"}, {"note", `quote " slash \ bracket ]`}}}},
		Msg:  "lease granted ip=198.18.1.100"}
	p, err := parse5424(m.Append(nil, 2048))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || !reflect.DeepEqual(p.Message, m) {
		t.Errorf("read back %+v\nwant      %+v", p.Message, m)
	}
}

func TestMessageLimits(t *testing.T) {
	long := strings.Repeat("x", 300)
	m := Message{Facility: Local0, Severity: Info, Time: t0, Hostname: long, AppName: long, ProcID: long, MsgID: long,
		Msg: strings.Repeat("é", 5000)} // two bytes each: a cut must not split one
	for _, limit := range []int{0, 1024, 2048, 8192} {
		b := m.Append(nil, limit)
		p, err := parse5424(b)
		if err != nil {
			t.Fatal(err)
		}
		if want := max(limit, MinMessageSize); len(b) > want || len(b) < want-1 {
			t.Errorf("limit %d: %d bytes, want %d (or one less, not to split a character)", limit, len(b), want)
		}
		if len(p.Hostname) != 255 || len(p.AppName) != 48 || len(p.ProcID) != 128 || len(p.MsgID) != 32 {
			t.Errorf("header fields not cut to their limits: %d %d %d %d", len(p.Hostname), len(p.AppName), len(p.ProcID), len(p.MsgID))
		}
		if !utf8.ValidString(p.Msg) || !strings.HasPrefix(m.Msg, p.Msg) || p.Msg == "" {
			t.Errorf("limit %d: MSG not a whole-character prefix: %d bytes", limit, len(p.Msg))
		}
	}
	// Structured data that cannot fit is left out rather than cut.
	big := Message{Facility: Local0, Severity: Info, Data: []Element{{ID: "x", Params: []Param{{"v", strings.Repeat("v", 3000)}}}}, Msg: "kept"}
	b := big.Append(nil, 2048)
	p, err := parse5424(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Data != nil || p.Msg != "kept" {
		t.Errorf("oversized SD: got %q", b)
	}
}

func TestFraming(t *testing.T) {
	msg := []byte("<134>1 - - - - - hi")
	if got := string(TCP.AppendFrame(nil, msg)); got != "19 <134>1 - - - - - hi" {
		t.Errorf("tcp frame %q", got)
	}
	if got := string(UDP.AppendFrame(nil, msg)); got != string(msg) {
		t.Errorf("udp frame %q", got)
	}
}

func TestNames(t *testing.T) {
	for _, n := range FacilityNames() {
		f, err := ParseFacility(n)
		if err != nil || f.String() != n {
			t.Errorf("facility %q: %v %v", n, f, err)
		}
	}
	if f, _ := ParseFacility("local0"); Priority(f, Info) != 134 {
		t.Errorf("local0.info PRI %d, want 134", Priority(f, Info))
	}
	if _, err := ParseFacility("local8"); err == nil || !strings.Contains(err.Error(), "local7") {
		t.Errorf("local8: %v", err)
	}
	for _, p := range []Protocol{UDP, TCP} {
		if q, err := ParseProtocol(p.String()); err != nil || q != p {
			t.Errorf("protocol %v: %v %v", p, q, err)
		}
	}
	if _, err := ParseProtocol("tls"); err == nil {
		t.Error("tls parsed")
	}
	for l, want := range map[slog.Level]Severity{
		slog.LevelDebug: Debug, slog.LevelInfo: Info, slog.LevelInfo + 2: Notice,
		slog.LevelWarn: Warning, slog.LevelError: Error, slog.LevelError + 4: Error, slog.LevelDebug - 4: Debug,
	} {
		if got := SeverityOf(l); got != want {
			t.Errorf("SeverityOf(%v) = %v, want %v", l, got, want)
		}
	}
}

// Whatever the fields hold, the formatter's output obeys the grammar and
// the limit.
func FuzzMessageAppend(f *testing.F) {
	f.Add(uint8(16), uint8(6), int64(1_700_000_000), "branch-7", "tunnel", "1", "", "meta", "sequenceId", "7", "up", 2048)
	f.Add(uint8(0), uint8(0), int64(0), "", "", "", "", "", "", "", "", 0)
	f.Add(uint8(23), uint8(7), int64(-1), "a b", "é", "\x00", "]", "a=b", `"`, `\]"`, "\uFEFF\xff", 1024)
	f.Fuzz(func(t *testing.T, fac, sev uint8, unix int64, host, app, proc, msgid, sdid, pname, pvalue, msg string, limit int) {
		var tm time.Time
		if unix != 0 {
			tm = time.Unix(unix, 0)
		}
		m := Message{Facility: Facility(fac % 24), Severity: Severity(sev % 8), Time: tm, Hostname: host, AppName: app, ProcID: proc, MsgID: msgid, Msg: msg}
		if sdid != "" {
			m.Data = []Element{{ID: sdid, Params: []Param{{pname, pvalue}}}}
		}
		limit %= 1 << 16
		b := m.Append(nil, limit)
		p, err := parse5424(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > max(limit, MinMessageSize) {
			t.Fatalf("%d bytes over the limit %d", len(b), limit)
		}
		if p.Facility != m.Facility || p.Severity != m.Severity {
			t.Fatalf("PRI read back as %v.%v", p.Facility, p.Severity)
		}
		if len(p.Data) == 1 && utf8.ValidString(pvalue) && p.Data[0].Params[0].Value != pvalue {
			t.Fatalf("param value %q read back as %q", pvalue, p.Data[0].Params[0].Value)
		}
	})
}

// The test's grammar check rejects what breaks the grammar, so the tests
// above that pass through it can fail.
func TestParserRejects(t *testing.T) {
	for _, bad := range []string{
		`<192>1 - - - - - -`,                                     // PRIVAL over 191
		`<01>1 - - - - - -`,                                      // leading zero
		`<13>0 - - - - - -`,                                      // VERSION 0
		`<13>1 - - - - -`,                                        // no STRUCTURED-DATA
		"<13>1 - host\x01 - - - - -",                             // control character in HOSTNAME
		`<13>1 2026-11-30T07:19:53.1234567Z - - - - -`,           // seven TIME-SECFRAC digits
		`<13>1 - - - - - [x v="a]b"]`,                            // unescaped ']'
		`<13>1 - - - - - [x v="a\b"]`,                            // backslash escaping nothing
		`<13>1 - - - - - [x v=a]`,                                // unquoted PARAM-VALUE
		`<13>1 - - - - - [abcdefghijklmnopqrstuvwxyz0123456789]`, // SD-NAME over 32
		`<13>1 - - - - - -msg`,                                   // MSG without SP
		"<13>1 - - - - - - \uFEFFmsg",                            // BOM
	} {
		if _, err := parse5424([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
