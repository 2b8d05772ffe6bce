package ikeconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{
		LocalID: "branch1.example", RemoteID: "edge.example", Remote: "192.0.2.1",
		Auth: "psk", PSK: NewSecret("0123456789abcdef-secret"),
		LocalSubnets:  mustPrefixes("198.18.1.0/24"),
		RemoteSubnets: mustPrefixes("198.18.0.0/24", "198.19.0.0/16"),
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; empty means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"missing psk", func(c *Config) { c.PSK = Secret{} }, `tunnel.psk: required when auth is "psk"`},
		{"short psk", func(c *Config) { c.PSK = NewSecret("short") }, "tunnel.psk: too short"},
		{"bad auth", func(c *Config) { c.Auth = "rsa" }, `tunnel.auth: unknown "rsa"`},
		{"cert needs files", func(c *Config) { c.Auth = "cert" }, `tunnel.cert: required when auth is "cert"`},
		{"cert needs ca", func(c *Config) { c.Auth, c.Cert, c.Key = "cert", "a", "b" }, `tunnel.ca: required`},
		{"bad ke", func(c *Config) { c.KE = KEList{"x25519", "modp1024"} }, `tunnel.ke[1]: unknown "modp1024"`},
		{"ke twice", func(c *Config) { c.KE = KEList{"ecp384", "ecp384"} }, `tunnel.ke[1]: "ecp384" is listed twice`},
		{"empty ke", func(c *Config) { c.KE = KEList{} }, "tunnel.ke: empty list"},
		{"ke list", func(c *Config) { c.KE = KEList{"ecp384", "x25519"} }, ""},
		{"addke alternatives", func(c *Config) { c.AddKE = []string{"mlkem768|mlkem1024", "mlkem1024"} }, ""},
		{"bad addke alternative", func(c *Config) { c.AddKE = []string{"mlkem768|kyber"} }, `tunnel.addke[0]: unknown "kyber" in "mlkem768|kyber"`},
		{"empty addke alternative", func(c *Config) { c.AddKE = []string{"mlkem768|"} }, `tunnel.addke[0]: unknown "" in "mlkem768|"`},
		{"addke alternative twice", func(c *Config) { c.AddKE = []string{"mlkem768|mlkem768"} }, `tunnel.addke[0]: "mlkem768" is listed twice`},
		{"bad addke", func(c *Config) { c.AddKE = []string{"mlkem768", "kyber"} }, `tunnel.addke[1]: unknown "kyber"`},
		{"empty addke needs allow", func(c *Config) { c.AddKE = []string{} }, "tunnel.addke: empty list means classical-only"},
		{"empty addke allowed", func(c *Config) { c.AddKE, c.AllowClassical = []string{}, true }, ""},
		{"no local subnets", func(c *Config) { c.LocalSubnets = nil }, "tunnel.local_subnets: at least one"},
		{"no remote subnets", func(c *Config) { c.RemoteSubnets = nil }, "tunnel.remote_subnets: at least one"},
		{"bad remote", func(c *Config) { c.Remote = "edge.example" }, "tunnel.remote:"},
		{"missing remote", func(c *Config) { c.Remote = "" }, "tunnel.remote: required"},
		{"missing ids", func(c *Config) { c.LocalID = "" }, "tunnel.local_id: required"},
		{"bad lifetime", func(c *Config) { c.IKELifetime = "4 hours" }, "tunnel.ike_lifetime: bad duration"},
		{"short child lifetime", func(c *Config) { c.ChildLifetime = "10s" }, "tunnel.child_lifetime: 10s is below"},
		{"negative dpd", func(c *Config) { c.DPDInterval = "-1s" }, "tunnel.dpd_interval: must not be negative"},
		{"fragment size", func(c *Config) { c.FragmentSize = 100 }, "tunnel.fragment_size: 100 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := validConfig()
	if got := fmt.Sprint(c.KENames()); got != "[x25519 ecp256 ecp384]" {
		t.Errorf("KENames() = %s", got)
	}
	if got := fmt.Sprint(c.AddKENames()); got != "[[mlkem768]]" {
		t.Errorf("AddKENames() = %s", got)
	}
	c.AddKE = []string{}
	if got := c.AddKENames(); len(got) != 0 {
		t.Errorf("explicit empty AddKE gave %v", got)
	}
	ikeLife, child, dpd := c.Durations()
	if ikeLife != DefaultIKELifetime || child != DefaultChildLifetime || dpd != DefaultDPDInterval {
		t.Errorf("Durations() = %v %v %v", ikeLife, child, dpd)
	}
	if ap, err := c.RemoteAddrPort(); err != nil || ap.Port() != 500 {
		t.Errorf("RemoteAddrPort() = %v, %v", ap, err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const value = "0123456789abcdef-very-secret"
	c := validConfig()
	c.PSK = NewSecret(value)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cfg", "psk", c.PSK, "config", c)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"%s": fmt.Sprintf("%s", c.PSK), "json": string(js), "slog": logBuf.String(),
	} {
		if strings.Contains(out, value) {
			t.Errorf("%s output leaks the secret: %s", name, out)
		}
	}
	var back Config
	if err := json.Unmarshal([]byte(`{"psk":"`+value+`"}`), &back); err != nil {
		t.Fatal(err)
	}
	if string(back.PSK.Bytes()) != value {
		t.Errorf("unmarshal lost the value")
	}
}

func mustPrefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// tunnel.ke reads as a single group name (the old form) or a list, and the
// defaults apply only when it is absent.
func TestKEListJSON(t *testing.T) {
	for _, tc := range []struct {
		json    string
		want    []string
		wantErr string
	}{
		{`{}`, []string{"x25519", "ecp256", "ecp384"}, ""},
		{`{"ke": "ecp384"}`, []string{"ecp384"}, ""},
		{`{"ke": ["ecp384", "x25519"]}`, []string{"ecp384", "x25519"}, ""},
		{`{"ke": 25}`, nil, "expected a group name"},
	} {
		var c Config
		err := json.Unmarshal([]byte(tc.json), &c)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.json, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if got := c.KENames(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: KENames() = %v, want %v", tc.json, got, tc.want)
		}
	}
	c := Config{AddKE: []string{"mlkem768|mlkem1024", "mlkem1024"}}
	if got := fmt.Sprint(c.AddKENames()); got != "[[mlkem768 mlkem1024] [mlkem1024]]" {
		t.Errorf("AddKENames() = %s", got)
	}
}
