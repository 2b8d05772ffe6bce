// Package ike is the appliance's IKEv2 initiator: hybrid (classical + ML-KEM)
// key exchange towards one edge responder, with the resulting ESP SAs installed
// in the kernel through an Installer.
package ike

import "github.com/pqbranch/pqbranch/services/ike/ikeconf"

// Config is the `tunnel` section of the appliance configuration. It lives in
// the leaf package ikeconf so that the config loader and host tools need not
// compile this package; the aliases keep ike.Config working.
type (
	Config = ikeconf.Config
	Secret = ikeconf.Secret
	KEList = ikeconf.KEList
)

// NewSecret wraps s.
func NewSecret(s string) Secret { return ikeconf.NewSecret(s) }

// Defaults of the optional fields.
const (
	DefaultKE            = ikeconf.DefaultKE
	DefaultIKELifetime   = ikeconf.DefaultIKELifetime
	DefaultChildLifetime = ikeconf.DefaultChildLifetime
	DefaultDPDInterval   = ikeconf.DefaultDPDInterval
	DefaultFragmentSize  = ikeconf.DefaultFragmentSize
)
