// Package config is the appliance configuration: one human-readable JSON file
// on the data partition, validated completely before any of it is used, so a
// typo is reported (file, field, what was expected) while the appliance keeps
// running its last good configuration.
package config

import (
	"crypto/x509"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeconf"
	"github.com/pqbranch/pqbranch/update/window"
)

// DefaultPath is where the appliance keeps its configuration. It lives on the
// data partition so that it survives A/B image updates.
const DefaultPath = "/data/pqbranch.json"

// Config is the whole appliance configuration.
type Config struct {
	// Serial is the site config revision; a stick's config replaces the
	// installed one only when its serial is higher (services/provision).
	// Absent: 0.
	Serial   int64           `json:"serial,omitempty"`
	Hostname string          `json:"hostname"`
	MTU      int             `json:"mtu,omitempty"` // 0 keeps 1500
	WAN      WAN             `json:"wan"`
	LAN      LAN             `json:"lan"`
	DNS      DNS             `json:"dns"`
	Routes   []Route         `json:"routes,omitempty"`
	Firewall Firewall        `json:"firewall"`
	Tunnel   *ikeconf.Config `json:"tunnel"` // nil: no tunnel, remote subnets unreachable
	Time     Time            `json:"time"`
	Update   Update          `json:"update"`
	Log      *Log            `json:"log,omitempty"` // nil: the log stays on the box
}

// WAN is the uplink side.
type WAN struct {
	Mode   string  `json:"mode"` // "dhcp" or "static"
	Static *Static `json:"static,omitempty"`
}

// Static is a fixed WAN address.
type Static struct {
	Address netip.Prefix `json:"address"` // address and its subnet, e.g. 192.0.2.10/24
	Gateway netip.Addr   `json:"gateway"`
	DNS     []netip.Addr `json:"dns,omitempty"`
}

// LAN is the branch side.
type LAN struct {
	Addresses []netip.Prefix `json:"addresses"`
	// ULA adds a stable RFC 4193 /64 out of a /48 derived from the device,
	// so LAN hosts keep their IPv6 addresses across reboots and updates.
	ULA bool `json:"ula,omitempty"`
	// DHCP tunes the LAN DHCP server that firewall.lan.dhcp turns on;
	// absent: a pool in the upper half of the first IPv4 subnet, 12h leases.
	DHCP *DHCPServer `json:"dhcp,omitempty"`
}

// DNS overrides the upstream resolvers learnt from DHCP or the static WAN.
type DNS struct {
	Servers []netip.Addr `json:"servers,omitempty"`
	Search  []string     `json:"search,omitempty"`
	// Internal are split-DNS domains: names under them are asked only of
	// their servers, which sit in tunnel.remote_subnets, never of Servers.
	Internal []InternalDomain `json:"internal,omitempty"`
}

// Route is an extra static route.
type Route struct {
	To  netip.Prefix `json:"to"`
	Via netip.Addr   `json:"via"`
}

// Firewall says what the appliance lets through besides the tunnel.
type Firewall struct {
	// InternetBreakout lets LAN hosts reach the internet directly (masqueraded)
	// instead of only the remote subnets through the tunnel.
	InternetBreakout bool `json:"internet_breakout"`
	// ManagementPort is the LAN TCP port of the read-only status endpoint.
	ManagementPort int         `json:"management_port,omitempty"` // 0 keeps 80
	LAN            LANServices `json:"lan"`
}

// LANServices are the services the appliance offers to the LAN.
type LANServices struct {
	DHCP bool `json:"dhcp"`
	DNS  bool `json:"dns"`
}

// Time is the clock source.
type Time struct {
	NTP []string `json:"ntp,omitempty"` // "host" or "host:port"
}

// Update is how the appliance takes A/B updates. The fields are kept as
// written in the file (so the config marshals back to what was read);
// Parse and Load fill Parsed with the values the update agent uses.
type Update struct {
	// Window is when an update may reboot the appliance: a string
	// "Sun 02:00-04:00" or an object {"start_hour": 2, "duration_hours": 2,
	// ...}, see window.Parse. Absent: any time.
	Window json.RawMessage `json:"window,omitempty"`
	// URL is the https URL of the update server. Empty: no automatic
	// checks, only bundles installed by hand.
	URL string `json:"url,omitempty"`
	// Repository is the https base URL of a release repository (signed
	// metadata and bundles, update/repo): the box checks in there and
	// updates when its rollout wave is open. Exclusive with URL.
	Repository string `json:"repository,omitempty"`
	// ReportURL is the fleet's report endpoint (https base URL), where the
	// box sends each update's signed outcome. Empty: no reports.
	ReportURL string `json:"report_url,omitempty"`
	// CA is PEM text with the certificates the server's chain must lead to;
	// required with URL, Repository or ReportURL, as the appliance carries
	// no public root store.
	CA string `json:"ca,omitempty"`
	// TrialTimeout bounds the first boot of a new slot: unhealthy for this
	// long and it rolls back. A Go duration, 1m..2h; empty: 10m.
	TrialTimeout string `json:"trial_timeout,omitempty"`

	Parsed ParsedUpdate `json:"-"`
}

// ParsedUpdate is the update section after validation.
type ParsedUpdate struct {
	Window       window.Window  // zero: any time
	CA           *x509.CertPool // nil when no CA is configured
	TrialTimeout time.Duration  // default applied
}

// DefaultManagementPort is the status endpoint's port when none is set.
const DefaultManagementPort = 80

// Port returns the management port with the default applied.
func (f Firewall) Port() int {
	if f.ManagementPort == 0 {
		return DefaultManagementPort
	}
	return f.ManagementPort
}

// LinkMTU returns the MTU with the default applied.
func (c *Config) LinkMTU() int {
	if c.MTU == 0 {
		return 1500
	}
	return c.MTU
}

// RemoteSubnets returns the prefixes that must only ever leave through the
// tunnel, none when no tunnel is configured.
func (c *Config) RemoteSubnets() []netip.Prefix {
	if c.Tunnel == nil {
		return nil
	}
	return c.Tunnel.RemoteSubnets
}
