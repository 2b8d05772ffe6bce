package config

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const examplePSK = "correct-horse-battery-staple-7"

func readExample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExamplesLoad(t *testing.T) {
	for _, f := range []string{"testdata/full.json", "../../boards/qemu-x86_64.config.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(f, b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(c.RemoteSubnets()) == 0 {
			t.Errorf("%s: no remote subnets", f)
		}
	}
	c, _ := Parse("full", readExample(t))
	if c.WAN.Static.Gateway.String() != "192.0.2.1" || !c.LAN.ULA || c.Firewall.Port() != 8080 || string(c.Tunnel.PSK.Bytes()) != examplePSK {
		t.Errorf("decoded wrongly: %+v", c)
	}
}

// edit applies a change to the example through a generic JSON tree, so each
// case states only what it breaks.
func edit(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readExample(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sub(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name   string
		raw    []byte
		field  string
		expect string // substring of the problem
	}{
		{"wrong type", edit(t, func(m map[string]any) { m["mtu"] = "1500" }), "mtu", "expected a whole number, got a string"},
		{"wrong type nested", edit(t, func(m map[string]any) { sub(m, "firewall")["internet_breakout"] = "yes" }), "firewall.internet_breakout", "expected true or false"},
		{"unknown field", edit(t, func(m map[string]any) { sub(m, "wan", "static")["adress"] = "192.0.2.9/24" }), "wan.static.adress", "unknown field; expected one of: address, gateway, dns"},
		{"unknown top field", edit(t, func(m map[string]any) { m["firewal"] = map[string]any{} }), "firewal", "unknown field"},
		{"bad CIDR", edit(t, func(m map[string]any) { sub(m, "wan", "static")["address"] = "192.0.2.300/24" }), "wan.static.address", `expected an address prefix string like "198.18.1.1/24", got "192.0.2.300/24"`},
		{"bad CIDR in list", edit(t, func(m map[string]any) { sub(m, "lan")["addresses"] = []any{"198.18.1.1/24", "198.18.2.1/33"} }), "lan.addresses[1]", "expected an address prefix"},
		{"bad CIDR in tunnel", edit(t, func(m map[string]any) { sub(m, "tunnel")["remote_subnets"] = []any{"198.19.0.0"} }), "tunnel.remote_subnets[0]", "expected an address prefix"},
		{"missing psk", edit(t, func(m map[string]any) { delete(sub(m, "tunnel"), "psk") }), "tunnel.psk", `required when auth is "psk"`},
		{"network address", edit(t, func(m map[string]any) { sub(m, "lan")["addresses"] = []any{"198.18.1.0/24"} }), "lan.addresses[0]", "expected a host address"},
		{"gateway outside", edit(t, func(m map[string]any) { sub(m, "wan", "static")["gateway"] = "198.18.0.1" }), "wan.static.gateway", "expected an address inside 192.0.2.0/24"},
		{"bad mode", edit(t, func(m map[string]any) { sub(m, "wan")["mode"] = "pppoe" }), "wan.mode", `expected "dhcp" or "static", got "pppoe"`},
		{"static missing", edit(t, func(m map[string]any) { delete(sub(m, "wan"), "static") }), "wan.static", "expected an object with address and gateway"},
		{"mtu range", edit(t, func(m map[string]any) { m["mtu"] = 100 }), "mtu", "expected 1280..9000"},
		{"bad window", edit(t, func(m map[string]any) { sub(m, "update")["window"] = "Sunday 2am" }), "update.window", `expected "<Sun..Sat|daily> HH:MM-HH:MM [time zone]" like "Sun 02:00-04:00", got "Sunday 2am"`},
		{"bad window day", edit(t, func(m map[string]any) {
			sub(m, "update")["window"] = map[string]any{"start_hour": 2, "duration_hours": 2, "days": []any{"sun", "funday"}}
		}), "update.window.days[1]", `expected a day "sun".."sat" or "sunday".."saturday", got "funday"`},
		{"bad window hour", edit(t, func(m map[string]any) {
			sub(m, "update")["window"] = map[string]any{"start_hour": 24, "duration_hours": 2}
		}), "update.window.start_hour", "expected a whole number 0..23"},
		{"bad window zone", edit(t, func(m map[string]any) {
			sub(m, "update")["window"] = map[string]any{"start_hour": 2, "duration_hours": 2, "timezone": "Europe/Berlln"}
		}), "update.window.timezone", `expected an IANA time zone like "Europe/Berlin" or "UTC", got "Europe/Berlln"`},
		{"unknown window field", edit(t, func(m map[string]any) { sub(m, "update")["window"] = map[string]any{"start_hour": 2, "hours": 2} }), "update.window.hours", "unknown field; expected one of: start_hour, start, duration_hours, duration, days, embargo, timezone"},
		{"window not a window", edit(t, func(m map[string]any) { sub(m, "update")["window"] = 2 }), "update.window", `expected a string like "Sun 02:00-04:00" or an object`},
		{"unknown update field", edit(t, func(m map[string]any) { sub(m, "update")["trial"] = "5m" }), "update.trial", "unknown field; expected one of: window, url, repository, report_url, ca, trial_timeout"},
		{"http url", edit(t, func(m map[string]any) { sub(m, "update")["url"] = "http://updates.example/" }), "update.url", `expected an https URL like "https://updates.example/pqbranch/", got scheme "http"`},
		{"url without host", edit(t, func(m map[string]any) { sub(m, "update")["url"] = "https:///pqbranch" }), "update.url", "got no host"},
		{"url not a url", edit(t, func(m map[string]any) { sub(m, "update")["url"] = "https://updates example/%zz" }), "update.url", "got text that is not a URL"},
		{"url with password", edit(t, func(m map[string]any) { sub(m, "update")["url"] = "https://fleet:s3cret@updates.example/" }), "update.url", "without a user name or password"},
		{"http repository", edit(t, func(m map[string]any) { sub(m, "update")["repository"] = "http://updates.example/repo/" }), "update.repository", `expected an https URL like "https://updates.example/pqbranch/repo/", got scheme "http"`},
		{"report url without host", edit(t, func(m map[string]any) { sub(m, "update")["report_url"] = "https:///reports" }), "update.report_url", "got no host"},
		{"url and repository", edit(t, func(m map[string]any) {
			sub(m, "update")["url"] = "https://updates.example/pqbranch/update.pqb"
			sub(m, "update")["repository"] = "https://updates.example/pqbranch/repo/"
		}), "update.repository", "expected either update.url (one bundle) or update.repository (a release repository), not both"},
		{"repository needs ca", edit(t, func(m map[string]any) { sub(m, "update")["repository"] = "https://updates.example/repo/" }), "update.ca", "required when update.repository is set"},
		{"report url needs ca", edit(t, func(m map[string]any) { sub(m, "update")["report_url"] = "https://fleet.example/" }), "update.ca", "required when update.report_url is set"},
		{"url needs ca", edit(t, func(m map[string]any) { sub(m, "update")["url"] = "https://updates.example/" }), "update.ca", "required when update.url is set"},
		{"ca not pem", edit(t, func(m map[string]any) { sub(m, "update")["ca"] = "MIIBYTCCAROgAwIBAgIU" }), "update.ca", "expected PEM text with at least one certificate"},
		{"ca holds a key", edit(t, func(m map[string]any) {
			sub(m, "update")["ca"] = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGZ1\n-----END PRIVATE KEY-----\n"
		}), "update.ca", `PEM block 1: expected a CERTIFICATE, got a "PRIVATE KEY" block`},
		{"ca bad certificate", edit(t, func(m map[string]any) {
			sub(m, "update")["ca"] = "-----BEGIN CERTIFICATE-----\nMIIBYTCCAROgAwIBAgIU\n-----END CERTIFICATE-----\n"
		}), "update.ca", "PEM block 1: expected an X.509 certificate"},
		{"trial timeout too long", edit(t, func(m map[string]any) { sub(m, "update")["trial_timeout"] = "3h" }), "update.trial_timeout", `expected a duration from "1m" to "2h" like "10m" (or leave out for 10m), got "3h"`},
		{"trial timeout not a duration", edit(t, func(m map[string]any) { sub(m, "update")["trial_timeout"] = "10" }), "update.trial_timeout", `got "10"`},
		{"trial timeout a number", edit(t, func(m map[string]any) { sub(m, "update")["trial_timeout"] = 600 }), "update.trial_timeout", "expected a string, got a number"},
		{"bad ntp", edit(t, func(m map[string]any) { sub(m, "time")["ntp"] = []any{"ntp example"} }), "time.ntp[0]", `expected "host" or "host:port"`},
		{"bad hostname", edit(t, func(m map[string]any) { m["hostname"] = "-x" }), "hostname", "expected a host name"},
		{"route host bits", edit(t, func(m map[string]any) {
			m["routes"] = []any{map[string]any{"to": "198.18.50.1/24", "via": "198.18.1.254"}}
		}), "routes[0].to", "expected a network prefix (198.18.50.0/24)"},
		{"list not object", []byte(`[]`), "", "the file must hold one JSON object: expected an object, got a list"},
		{"empty", []byte(``), "", "expected an object, got nothing"},
		{"syntax", []byte("{\n  \"hostname\": \"x\",\n  \"mtu\": ,\n}"), "", "invalid JSON"},
		{"trailing", append(readExample(t), []byte(`{}`)...), "", "unexpected data after the JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/data/pqbranch.json", tc.raw)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want *Error", err)
			}
			if ce.File != "/data/pqbranch.json" || !strings.HasPrefix(err.Error(), "/data/pqbranch.json: ") {
				t.Errorf("error does not name the file: %v", err)
			}
			found := false
			for _, f := range ce.Fields {
				if f.Field == tc.field && strings.Contains(f.Problem, tc.expect) {
					found = true
				}
			}
			if !found {
				t.Errorf("want field %q with %q, got:\n%v", tc.field, tc.expect, err)
			}
			if strings.Contains(err.Error(), examplePSK) {
				t.Errorf("error leaks the psk: %v", err)
			}
		})
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	_, err := Parse("f", []byte("{\n  \"hostname\": \"x\",\n  \"mtu\": ,\n}"))
	if err == nil || !strings.Contains(err.Error(), "f: line 3 column 10: invalid JSON") {
		t.Fatalf("got %v", err)
	}
}

func TestAllProblemsReported(t *testing.T) {
	raw := edit(t, func(m map[string]any) {
		m["hostname"] = ""
		sub(m, "wan")["mode"] = "x"
		delete(sub(m, "tunnel"), "psk")
	})
	_, err := Parse("f", raw)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Fields) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
}

func TestPSKNeverPrinted(t *testing.T) {
	c, err := Parse("f", readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c)
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cfg", "config", c, "tunnel", c.Tunnel)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", c.Tunnel), "%+v": fmt.Sprintf("%+v", *c.Tunnel), "%#v": fmt.Sprintf("%#v", *c.Tunnel),
		"json": string(js), "slog": logBuf.String(),
	} {
		if strings.Contains(s, examplePSK) {
			t.Errorf("%s leaks the psk: %s", name, s)
		}
	}
}

func writeConfig(t *testing.T, path string, b []byte) {
	t.Helper()
	// Write and rename, as an editor or the config upload would, so the
	// reload never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestReloadKeepsLastGood goes through the reload path a running appliance
// uses: each bad file is rejected with a located error, the good config stays
// in force and no subscriber is told to apply anything.
func TestReloadKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pqbranch.json")
	writeConfig(t, path, readExample(t))
	var logBuf bytes.Buffer
	s := NewStore(path, slog.New(slog.NewTextHandler(&logBuf, nil)))
	changes := s.Subscribe()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	good := s.Current()
	if got := <-changes; got != good {
		t.Fatal("subscriber not told about the first config")
	}
	bad := map[string]struct {
		raw         []byte
		field, want string
	}{
		"wrong type":    {edit(t, func(m map[string]any) { sub(m, "lan")["ula"] = 1 }), "lan.ula", "expected true or false, got a number"},
		"unknown field": {edit(t, func(m map[string]any) { m["hostnme"] = "x" }), "hostnme", "unknown field"},
		"bad CIDR":      {edit(t, func(m map[string]any) { sub(m, "lan")["addresses"] = []any{"198.18.1.1/40"} }), "lan.addresses[0]", "expected an address prefix"},
		"missing psk":   {edit(t, func(m map[string]any) { sub(m, "tunnel")["psk"] = "" }), "tunnel.psk", "required"},
	}
	for name, b := range bad {
		writeConfig(t, path, b.raw)
		err := s.Reload()
		want := path + ": " + b.field + ": "
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: got %v, want %q ... %q", name, err, want, b.want)
		}
		if s.Current() != good {
			t.Errorf("%s: config in force changed", name)
		}
		if s.LastError() == nil {
			t.Errorf("%s: error not recorded for status", name)
		}
		select {
		case <-changes:
			t.Errorf("%s: subscribers told to apply a bad config", name)
		default:
		}
	}
	if !strings.Contains(logBuf.String(), "keeping the previous one") || strings.Contains(logBuf.String(), examplePSK) {
		t.Errorf("log: %s", logBuf.String())
	}
	// A fixed file is picked up and reported.
	writeConfig(t, path, edit(t, func(m map[string]any) { m["hostname"] = "branch-8" }))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := <-changes; c.Hostname != "branch-8" || s.Current() != c || s.LastError() != nil {
		t.Fatalf("good reload not applied: %+v", c)
	}
}

func TestLoadTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, readExample(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestWatchReloadsOnSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	writeConfig(t, path, readExample(t))
	s := NewStore(path, slog.New(slog.DiscardHandler))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	changes := s.Subscribe()
	hup := make(chan os.Signal)
	ctx := t.Context()
	go s.Watch(ctx, hup)
	writeConfig(t, path, edit(t, func(m map[string]any) { m["hostname"] = "reloaded" }))
	hup <- os.Interrupt
	select {
	case c := <-changes:
		if c.Hostname != "reloaded" {
			t.Fatalf("hostname %q", c.Hostname)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload")
	}
}

// TestUpdateSection loads both forms of the update section and checks what
// the update agent gets from it.
func TestUpdateSection(t *testing.T) {
	ca, err := os.ReadFile("testdata/update-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	// The example's legacy string, with every default.
	c, err := Parse("full", readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	u := c.Update.Parsed
	if got := u.Window.String(); got != "Sun 02:00-04:00 UTC" {
		t.Errorf("window %q", got)
	}
	if u.TrialTimeout != 10*time.Minute || u.CA != nil {
		t.Errorf("defaults: %+v", u)
	}
	sunday := time.Date(2026, 3, 8, 3, 0, 0, 0, time.UTC)
	if !u.Window.Contains(sunday) || u.Window.Contains(sunday.Add(time.Hour)) {
		t.Errorf("window does not hold Sunday 03:00 UTC only")
	}

	// The full section.
	raw := edit(t, func(m map[string]any) {
		m["update"] = map[string]any{
			"window": map[string]any{
				"start_hour": 2, "duration_hours": 2, "days": []any{"sun"},
				"embargo": []any{"2026-12-27"}, "timezone": "Europe/Berlin",
			},
			"url":           "https://updates.example/pqbranch/",
			"ca":            string(ca),
			"trial_timeout": "15m",
		}
	})
	c, err = Parse("update", raw)
	if err != nil {
		t.Fatal(err)
	}
	u = c.Update.Parsed
	if got := u.Window.String(); got != "Sun 02:00-04:00 Europe/Berlin, embargo 2026-12-27" {
		t.Errorf("window %q", got)
	}
	if u.TrialTimeout != 15*time.Minute || c.Update.URL != "https://updates.example/pqbranch/" {
		t.Errorf("parsed %+v, url %q", u, c.Update.URL)
	}
	block, _ := pem.Decode(ca)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// The pool is the one the agent verifies the server with: the CA verifies itself.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: u.CA, CurrentTime: cert.NotBefore.Add(time.Hour)}); err != nil {
		t.Errorf("CA pool does not hold the configured CA: %v", err)
	}
	// 2026-12-27 is an embargoed Sunday: the next reboot is a week later,
	// 02:00-04:00 in Berlin (01:00-03:00 UTC).
	at, _, ok := u.Window.Next(time.Date(2026, 12, 26, 12, 0, 0, 0, time.UTC), "branch-7", 30*time.Minute)
	if from := time.Date(2027, 1, 3, 1, 0, 0, 0, time.UTC); !ok || at.Before(from) || !at.Before(from.Add(90*time.Minute)) {
		t.Errorf("next reboot %v, want 2027-01-03 01:00..02:30 UTC", at)
	}
	// The section marshals back as it was written.
	js, err := json.Marshal(c.Update)
	if err != nil {
		t.Fatal(err)
	}
	var back Update
	var p problems
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.validate(&p); len(p) > 0 || back.Parsed.Window.String() != u.Window.String() || back.CA != string(ca) {
		t.Errorf("round trip %s: %v", js, p)
	}
}

func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/full.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"hostname":"x","wan":{"mode":"dhcp"},"lan":{"addresses":["198.18.1.1/24"]}}`))
	f.Add([]byte(`{"tunnel":{"psk":1}}`))
	f.Add([]byte(`[1,{"a":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("fuzz.json", b)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Fields) == 0 || !strings.HasPrefix(err.Error(), "fuzz.json: ") {
				t.Fatalf("unlocated error %T: %v", err, err)
			}
			return
		}
		// What was accepted must be usable without further checks.
		if c.Hostname == "" || len(c.LAN.Addresses) == 0 || (c.WAN.Mode == "static") != (c.WAN.Static != nil) {
			t.Fatalf("accepted invalid config: %+v", c)
		}
	})
}
