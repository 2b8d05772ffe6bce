package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/services/syslog"
)

// TestSyslog: log.syslog, remote syslog to a collector.
func TestSyslog(t *testing.T) {
	cases := []struct {
		name   string
		syslog any // the log.syslog value; nil: no log section
		want   SyslogSettings
		field  string // the problem's field path; empty: valid
		expect string // substring of the problem
	}{
		{name: "absent"},
		{name: "example", syslog: map[string]any{"server": "192.0.2.50:514", "protocol": "tcp", "facility": "local3", "level": "info"},
			want: SyslogSettings{Address: "192.0.2.50:514", Protocol: syslog.TCP, Facility: syslog.Local3, Level: slog.LevelInfo}},
		{name: "defaults", syslog: map[string]any{"server": "logs.example"},
			want: SyslogSettings{Address: "logs.example:514", Protocol: syslog.UDP, Facility: syslog.Local0, Level: slog.LevelInfo}},
		{name: "ipv6 without port", syslog: map[string]any{"server": "2001:db8::50", "level": "debug"},
			want: SyslogSettings{Address: "[2001:db8::50]:514", Protocol: syslog.UDP, Facility: syslog.Local0, Level: slog.LevelDebug}},
		{name: "ipv6 with port", syslog: map[string]any{"server": "[2001:db8::50]:1514", "facility": "daemon", "level": "warning"},
			want: SyslogSettings{Address: "[2001:db8::50]:1514", Protocol: syslog.UDP, Facility: syslog.Daemon, Level: slog.LevelWarn}},
		{name: "behind the tunnel", syslog: map[string]any{"server": "198.19.0.10"},
			want: SyslogSettings{Address: "198.19.0.10:514", Protocol: syslog.UDP, Facility: syslog.Local0, Level: slog.LevelInfo, Source: netip.MustParseAddr("198.18.1.1")}},
		{name: "no server", syslog: map[string]any{"protocol": "udp"}, field: "log.syslog.server", expect: `expected the collector as "host" or "host:port"`},
		{name: "bad port", syslog: map[string]any{"server": "192.0.2.50:70000"}, field: "log.syslog.server", expect: `expected "host" or "host:port" (port 1..65535), got "192.0.2.50:70000"`},
		{name: "empty port", syslog: map[string]any{"server": "192.0.2.50:"}, field: "log.syslog.server", expect: `(port 1..65535), got "192.0.2.50:"`},
		{name: "bad host", syslog: map[string]any{"server": "logs_example:514"}, field: "log.syslog.server", expect: `got "logs_example:514"`},
		{name: "protocol", syslog: map[string]any{"server": "192.0.2.50", "protocol": "tls"}, field: "log.syslog.protocol", expect: `expected "udp" or "tcp", got "tls"`},
		{name: "protocol case", syslog: map[string]any{"server": "192.0.2.50", "protocol": "UDP"}, field: "log.syslog.protocol", expect: `got "UDP"`},
		{name: "facility", syslog: map[string]any{"server": "192.0.2.50", "facility": "local8"}, field: "log.syslog.facility", expect: `expected one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0, local1, local2, local3, local4, local5, local6, local7, got "local8"`},
		{name: "level", syslog: map[string]any{"server": "192.0.2.50", "level": "notice"}, field: "log.syslog.level", expect: `expected one of debug, info, warning, error, got "notice"`},
		{name: "unknown field", syslog: map[string]any{"server": "192.0.2.50", "port": 514}, field: "log.syslog.port", expect: "unknown field; expected one of: server, protocol, facility, level"},
		{name: "wrong type", syslog: map[string]any{"server": 514}, field: "log.syslog.server", expect: "expected a string, got a number"},
		{name: "not an object", syslog: "192.0.2.50", field: "log.syslog", expect: `expected an object, got "192.0.2.50"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := edit(t, func(m map[string]any) {
				delete(m, "log")
				if tc.syslog != nil {
					m["log"] = map[string]any{"syslog": tc.syslog}
				}
			})
			c, err := Parse("site.json", raw)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				got, ok := c.SyslogSettings()
				if ok != (tc.syslog != nil) || !reflect.DeepEqual(got, tc.want) {
					t.Errorf("settings %+v (%v), want %+v", got, ok, tc.want)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want *Error", err)
			}
			if len(ce.Fields) != 1 || ce.Fields[0].Field != tc.field || !strings.Contains(ce.Fields[0].Problem, tc.expect) {
				t.Errorf("want only field %q with %q, got:\n%v", tc.field, tc.expect, err)
			}
		})
	}
}

// A collector behind the tunnel needs a LAN address the tunnel's policy
// covers to send from.
func TestSyslogBehindTunnelNeedsSource(t *testing.T) {
	raw := edit(t, func(m map[string]any) {
		m["log"] = map[string]any{"syslog": map[string]any{"server": "198.19.0.10:514"}}
		sub(m, "tunnel")["local_subnets"] = []any{"198.18.9.0/24"}
	})
	_, err := Parse("site.json", raw)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *Error", err)
	}
	found := false
	for _, f := range ce.Fields {
		found = found || f.Field == "log.syslog.server" && f.Problem == "expected a lan.addresses entry inside tunnel.local_subnets [198.18.9.0/24] to send to a collector behind the tunnel from"
	}
	if !found {
		t.Errorf("no log.syslog.server problem in:\n%v", err)
	}
}

// Every problem of the section is reported at once.
func TestSyslogAllProblems(t *testing.T) {
	raw := edit(t, func(m map[string]any) {
		m["log"] = map[string]any{"syslog": map[string]any{"server": "", "protocol": "x", "facility": "y", "level": "z"}}
	})
	_, err := Parse("site.json", raw)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *Error", err)
	}
	var fields []string
	for _, f := range ce.Fields {
		fields = append(fields, f.Field)
	}
	if want := []string{"log.syslog.server", "log.syslog.protocol", "log.syslog.facility", "log.syslog.level"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
}
