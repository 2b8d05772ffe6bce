package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Distro names one of the root filesystems the edge can run from.
type Distro string

const (
	// Forky is Debian testing with strongSwan 6.1 and OpenSSL >= 3.5: the
	// post-quantum reference peer (ML-KEM through the openssl plugin).
	Forky Distro = "forky"
	// Bookworm is Debian 12 with strongSwan 5.9: classical interop only.
	Bookworm Distro = "bookworm"
)

// DefaultMirror is the Debian mirror debootstrap fetches from.
const DefaultMirror = "http://deb.debian.org/debian"

// versionCheck is a `dpkg --compare-versions` condition the built root must
// satisfy; it catches a mirror that moved to a strongSwan or OpenSSL we did
// not test against before the root is committed to the cache.
type versionCheck struct {
	pkg, op, version string
}

type distroSpec struct {
	suite string
	// script is passed as debootstrap's fourth argument when the host's
	// debootstrap may not know the suite (Debian 12's has no forky script).
	script   string
	packages []string
	checks   []versionCheck
}

var basePackages = []string{
	"strongswan-charon", "strongswan-swanctl",
	"libstrongswan-standard-plugins", "libstrongswan-extra-plugins", "libcharon-extra-plugins",
	"iproute2", "iputils-ping",
}

func (d Distro) spec() (distroSpec, error) {
	switch d {
	case Forky:
		return distroSpec{
			suite:    "forky",
			script:   "/usr/share/debootstrap/scripts/sid",
			packages: append(append([]string{}, basePackages...), "iperf3", "tcpdump"),
			checks: []versionCheck{
				{"strongswan-charon", "ge", "6.1"},
				{"strongswan-charon", "lt", "7"},
				{"libssl3t64", "ge", "3.5"},
			},
		}, nil
	case Bookworm:
		return distroSpec{
			suite:    "bookworm",
			packages: append(append([]string{}, basePackages...), "iperf3", "tcpdump"),
			checks: []versionCheck{
				{"strongswan-charon", "ge", "5.9"},
				{"strongswan-charon", "lt", "6"},
			},
		}, nil
	}
	return distroSpec{}, fmt.Errorf("edge: unknown distro %q", string(d))
}

// dirName is the cache directory of a root. It carries a hash of the spec so
// that changing the package list builds a fresh root instead of silently
// reusing one that lacks the new packages.
func (s distroSpec) dirName(mirror string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", s.suite, s.script, mirror, strings.Join(s.packages, ","))
	for _, c := range s.checks {
		fmt.Fprintf(h, "%s %s %s\n", c.pkg, c.op, c.version)
	}
	return s.suite + "-" + hex.EncodeToString(h.Sum(nil))[:10]
}
