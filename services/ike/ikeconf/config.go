// Package ikeconf is the `tunnel` section of the appliance configuration and
// its validation. It is a leaf: it imports no crypto and no netlink, so host
// tools that only read or print a config (status, config-check) do not compile
// the IKE stack.
package ikeconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Config is the `tunnel` section of the appliance configuration.
type Config struct {
	LocalID  string `json:"local_id"`
	RemoteID string `json:"remote_id"`
	// Remote is the edge's address, "host" or "host:port" (port 500 by default).
	Remote string `json:"remote"`
	// Local optionally pins the local address to send from ("ip" or "ip:port").
	Local string `json:"local,omitempty"`

	Auth string `json:"auth"` // "psk" or "cert"
	PSK  Secret `json:"psk,omitempty"`
	Cert string `json:"cert,omitempty"` // PEM certificate file (leaf first, optional intermediates)
	Key  string `json:"key,omitempty"`  // PEM private key file (PKCS#8 or SEC 1): Ed25519, ECDSA P-256 or P-384
	CA   string `json:"ca,omitempty"`   // PEM file with the CA(s) the responder's chain must lead to

	// KE lists the classical groups offered in IKE_SA_INIT, preferred
	// first, and exactly those: default ["x25519", "ecp256", "ecp384"]. A
	// single string ("ecp384") is a list of one.
	KE KEList `json:"ke,omitempty"`
	// AddKE lists the additional key exchanges, one entry per exchange
	// (ADDKE1, ADDKE2, ...), default ["mlkem768"]. An entry may name
	// alternatives for its exchange, preferred first, joined by "|":
	// ["mlkem768|mlkem1024"] is one exchange of ML-KEM-768 or ML-KEM-1024.
	AddKE          []string `json:"addke,omitempty"`
	AllowClassical bool     `json:"allow_classical,omitempty"`

	LocalSubnets  []netip.Prefix `json:"local_subnets"`
	RemoteSubnets []netip.Prefix `json:"remote_subnets"`

	IKELifetime   string `json:"ike_lifetime,omitempty"`   // default "4h"
	ChildLifetime string `json:"child_lifetime,omitempty"` // default "1h"
	DPDInterval   string `json:"dpd_interval,omitempty"`   // default "30s"; "0s" disables
	FragmentSize  int    `json:"fragment_size,omitempty"`  // whole IP datagram, default 1280
}

// KEList is a list of group names that also reads a single JSON string as a
// list of one, so `"ke": "x25519"` keeps its meaning.
type KEList []string

// UnmarshalJSON reads a string or a list of strings.
func (l *KEList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = KEList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New(`expected a group name like "x25519" or a list of them`)
	}
	*l = many
	return nil
}

// Secret holds a pre-shared key. It never prints or marshals its value, so a
// config dump or a log line cannot leak it; only Bytes reveals it.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Bytes returns the secret's value.
func (s Secret) Bytes() []byte { return []byte(s.v) }

// IsZero reports whether no secret was set.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return "<redacted>"
}

// GoString keeps %#v from printing the value either.
func (s Secret) GoString() string { return `ikeconf.Secret("` + s.String() + `")` }

// MarshalJSON redacts the value.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the value from a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("psk must be a string")
	}
	s.v = v
	return nil
}

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Defaults of the optional fields.
const (
	DefaultKE            = "x25519" // the preferred (first) default group
	DefaultIKELifetime   = 4 * time.Hour
	DefaultChildLifetime = time.Hour
	DefaultDPDInterval   = 30 * time.Second
	DefaultFragmentSize  = 1280
)

// The key exchanges offered when none are configured.
var (
	defaultKE    = []string{"x25519", "ecp256", "ecp384"}
	defaultAddKE = []string{"mlkem768"}
)

// addkeOr separates the alternatives of one additional key exchange.
const addkeOr = "|"

var (
	classicalNames = []string{"x25519", "ecp256", "ecp384"}
	mlkemNames     = []string{"mlkem512", "mlkem768", "mlkem1024"}
)

// Validate checks c and names the offending field in its error.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("tunnel.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.LocalID == "" {
		add("local_id", "required")
	}
	if c.RemoteID == "" {
		add("remote_id", "required")
	}
	if c.Remote == "" {
		add("remote", "required")
	} else if _, err := c.RemoteAddrPort(); err != nil {
		add("remote", "%v", err)
	}
	if c.Local != "" {
		if _, err := parseAddrPort(c.Local, 0); err != nil {
			add("local", "%v", err)
		}
	}
	switch c.Auth {
	case "psk":
		if c.PSK.IsZero() {
			add("psk", `required when auth is "psk"`)
		} else if len(c.PSK.v) < 16 {
			add("psk", "too short (%d bytes, need at least 16)", len(c.PSK.v))
		}
	case "cert":
		for _, f := range []struct{ name, v string }{{"cert", c.Cert}, {"key", c.Key}, {"ca", c.CA}} {
			if f.v == "" {
				add(f.name, `required when auth is "cert"`)
			}
		}
	case "":
		add("auth", `required ("psk" or "cert")`)
	default:
		add("auth", `unknown %q (want "psk" or "cert")`, c.Auth)
	}
	if c.KE != nil && len(c.KE) == 0 {
		add("ke", "empty list; name at least one group (%v), or leave ke out for all three", classicalNames)
	}
	for i, g := range c.KE {
		switch {
		case !slices.Contains(classicalNames, g):
			add(fmt.Sprintf("ke[%d]", i), "unknown %q (want one of %v)", g, classicalNames)
		case slices.Index(c.KE, g) < i:
			add(fmt.Sprintf("ke[%d]", i), "%q is listed twice", g)
		}
	}
	for i, entry := range c.AddKE {
		alts := strings.Split(entry, addkeOr)
		for j, a := range alts {
			switch {
			case !slices.Contains(mlkemNames, a):
				add(fmt.Sprintf("addke[%d]", i), "unknown %q in %q (want one of %v, alternatives joined by %q)", a, entry, mlkemNames, addkeOr)
			case slices.Index(alts, a) < j:
				add(fmt.Sprintf("addke[%d]", i), "%q is listed twice in %q", a, entry)
			}
		}
	}
	if c.AddKE != nil && len(c.AddKE) == 0 && !c.AllowClassical {
		add("addke", "empty list means classical-only; set allow_classical to permit it")
	}
	if len(c.AddKE) > 7 {
		add("addke", "at most 7 additional key exchanges (ADDKE1..ADDKE7)")
	}
	if len(c.LocalSubnets) == 0 {
		add("local_subnets", "at least one prefix required")
	}
	if len(c.RemoteSubnets) == 0 {
		add("remote_subnets", "at least one prefix required")
	}
	for i, p := range c.LocalSubnets {
		if !p.IsValid() {
			add(fmt.Sprintf("local_subnets[%d]", i), "invalid prefix")
		}
	}
	for i, p := range c.RemoteSubnets {
		if !p.IsValid() {
			add(fmt.Sprintf("remote_subnets[%d]", i), "invalid prefix")
		}
	}
	ike, errIKE := durationOr(c.IKELifetime, DefaultIKELifetime)
	if errIKE != nil {
		add("ike_lifetime", "%v", errIKE)
	} else if ike < time.Minute {
		add("ike_lifetime", "%v is below the 1m minimum", ike)
	}
	child, errChild := durationOr(c.ChildLifetime, DefaultChildLifetime)
	if errChild != nil {
		add("child_lifetime", "%v", errChild)
	} else if child < time.Minute {
		add("child_lifetime", "%v is below the 1m minimum", child)
	}
	if d, err := durationOr(c.DPDInterval, DefaultDPDInterval); err != nil {
		add("dpd_interval", "%v", err)
	} else if d < 0 {
		add("dpd_interval", "must not be negative")
	}
	if c.FragmentSize != 0 && (c.FragmentSize < 576 || c.FragmentSize > 65535) {
		add("fragment_size", "%d out of range 576..65535", c.FragmentSize)
	}
	return errors.Join(errs...)
}

// RemoteAddrPort parses Remote, defaulting the port to 500.
func (c *Config) RemoteAddrPort() (netip.AddrPort, error) { return parseAddrPort(c.Remote, 500) }

// LocalAddrPort parses Local ("ip" or "ip:port"; port 0 when absent). Call only
// when Local is set.
func (c *Config) LocalAddrPort() (netip.AddrPort, error) { return parseAddrPort(c.Local, 0) }

// Durations returns the IKE SA lifetime, the Child SA lifetime and the DPD
// interval with defaults applied. Call after Validate.
func (c *Config) Durations() (ikeLife, childLife, dpd time.Duration) {
	ikeLife, _ = durationOr(c.IKELifetime, DefaultIKELifetime)
	childLife, _ = durationOr(c.ChildLifetime, DefaultChildLifetime)
	dpd, _ = durationOr(c.DPDInterval, DefaultDPDInterval)
	return
}

// KENames returns the classical groups to offer, preferred first, with the
// default applied when the field is absent.
func (c *Config) KENames() []string {
	if len(c.KE) == 0 {
		return slices.Clone(defaultKE)
	}
	return slices.Clone(c.KE)
}

// AddKENames returns the configured additional key exchanges, one list of
// alternatives (preferred first) per exchange, with the default applied
// when the field is absent (nil, not empty).
func (c *Config) AddKENames() [][]string {
	names := c.AddKE
	if names == nil {
		names = defaultAddKE
	}
	var out [][]string
	for _, entry := range names {
		out = append(out, strings.Split(entry, addkeOr))
	}
	return out
}

// Fragment returns the fragment size with the default applied.
func (c *Config) Fragment() int {
	if c.FragmentSize == 0 {
		return DefaultFragmentSize
	}
	return c.FragmentSize
}

func durationOr(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want e.g. \"4h\")", s)
	}
	return d, nil
}

func parseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address or address:port", s)
	}
	return netip.AddrPortFrom(a, defPort), nil
}
