package edge

import (
	"errors"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// Options describe one strongSwan edge: where it runs and the single IKE
// connection it carries. Zero values mean strongSwan's defaults unless noted.
type Options struct {
	// NS is the network namespace charon runs in. Required.
	NS *netns.NS
	// Distro picks the root; empty means Forky (strongSwan 6.1).
	Distro Distro
	// Cache holds the roots; nil means the default cache, printing build
	// progress to stderr.
	Cache *Cache

	// Name is the swanctl connection name; empty means "edge".
	Name string
	// LocalAddrs and RemoteAddrs are swanctl's local_addrs/remote_addrs.
	// An empty RemoteAddrs means %any (a responder that accepts anyone).
	LocalAddrs, RemoteAddrs string
	// LocalID and RemoteID are IKE identities. Empty LocalID means the
	// certificate's ID with certificate auth, else LocalAddrs; empty
	// RemoteID means %any.
	LocalID, RemoteID string

	// Auth is PSK when PSK is set, certificates otherwise.
	Auth Auth

	// Proposals are IKE proposals; empty means DefaultProposals for the
	// distro.
	Proposals []string
	// Fragmentation is swanctl's fragmentation setting; empty means "yes".
	Fragmentation string
	// FragmentSize is charon.fragment_size (bytes of the whole IP datagram);
	// 0 keeps strongSwan's 1280.
	FragmentSize int
	// Rekey, reauthentication and DPD intervals of the IKE SA. A negative
	// value disables the feature (writes 0).
	RekeyTime, ReauthTime, DPDDelay time.Duration
	// NoMOBIKE disables MOBIKE.
	NoMOBIKE bool

	// Children are the connection's CHILD_SAs; empty means one child "net"
	// with dynamic traffic selectors.
	Children []Child

	// LogLevels override charon's per-subsystem log levels (keys like
	// "default", "ike", "cfg", "knl", "net", "enc").
	LogLevels map[string]int
	// ExtraConn is raw swanctl.conf text inserted into the connection
	// section, for settings this type does not model.
	ExtraConn string
	// ExtraPlugins are loaded in addition to the fixed plugin list.
	ExtraPlugins []string
}

// Auth selects the authentication method.
type Auth struct {
	// PSK is a pre-shared key; when set, certificates are ignored.
	PSK string
	// Cert is this edge's certificate and key.
	Cert *Cert
	// CA is the trust anchor for the peer's certificate.
	CA *CA
}

// Child is one CHILD_SA of the connection.
type Child struct {
	// Name defaults to "net".
	Name string
	// LocalTS and RemoteTS are traffic selectors; empty means "dynamic".
	LocalTS, RemoteTS []string
	// ESPProposals empty means "aes256gcm16".
	ESPProposals []string
	// Mode empty means tunnel.
	Mode string
	// StartAction is none, trap or start; empty means none.
	StartAction string
	// RekeyTime: 0 keeps the default, negative disables.
	RekeyTime time.Duration
	// DPDAction and CloseAction are clear, trap or restart (or empty).
	DPDAction, CloseAction string
}

// DefaultProposals returns the IKE proposal an edge of distro d offers when
// Options.Proposals is empty: hybrid X25519 + ML-KEM-768 on strongSwan 6,
// classical X25519 on 5.9, which knows no additional key exchanges.
func DefaultProposals(d Distro) []string {
	if d == Bookworm {
		return []string{"aes256gcm16-prfsha384-x25519"}
	}
	return []string{"aes256gcm16-prfsha384-x25519-ke1_mlkem768"}
}

func (o Options) withDefaults() (Options, error) {
	if o.NS == nil {
		return o, errors.New("edge: Options.NS is required")
	}
	if o.Distro == "" {
		o.Distro = Forky
	}
	if o.Name == "" {
		o.Name = "edge"
	}
	if o.RemoteAddrs == "" {
		o.RemoteAddrs = "%any"
	}
	if len(o.Proposals) == 0 {
		o.Proposals = DefaultProposals(o.Distro)
	}
	if o.Fragmentation == "" {
		o.Fragmentation = "yes"
	}
	if o.Auth.PSK == "" {
		if o.Auth.Cert == nil || o.Auth.CA == nil {
			return o, errors.New("edge: Options.Auth needs a PSK or both Cert and CA")
		}
		if o.LocalID == "" {
			o.LocalID = o.Auth.Cert.ID
		}
	}
	if o.LocalID == "" {
		o.LocalID = o.LocalAddrs
	}
	if o.RemoteID == "" {
		o.RemoteID = "%any"
	}
	if len(o.Children) == 0 {
		o.Children = []Child{{}}
	}
	children := make([]Child, len(o.Children))
	for i, c := range o.Children {
		if c.Name == "" {
			c.Name = "net"
		}
		if len(c.ESPProposals) == 0 {
			c.ESPProposals = []string{"aes256gcm16"}
		}
		if c.Mode == "" {
			c.Mode = "tunnel"
		}
		if c.StartAction == "" {
			c.StartAction = "none"
		}
		children[i] = c
	}
	o.Children = children
	levels := map[string]int{"default": 1, "ike": 2, "cfg": 2}
	for k, v := range o.LogLevels {
		levels[k] = v
	}
	o.LogLevels = levels
	return o, nil
}
