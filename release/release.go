// Package release is the identity of one firmware build: what the build
// writes into the image as /etc/pqbranch/release.json, what init prints in
// its banner, and what an update bundle's manifest carries. It is a leaf
// package shared by the build (firmware), the appliance (services) and the
// update agent (update), so the three can never disagree about its shape.
package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
)

// Paths inside the image, written by the build and read by the appliance.
const (
	// File is the running firmware's release.
	File = "/etc/pqbranch/release.json"
	// BoardFile is the board description the image was built for.
	BoardFile = "/etc/pqbranch/board.json"
	// KeysFile is the keyring of update signing keys the image trusts.
	KeysFile = "/etc/pqbranch/update-keys.json"
	// DefaultConfigFile is the board's default appliance config.
	DefaultConfigFile = "/etc/pqbranch/default-config.json"
	// RepoRootFile is the release repository's initial root metadata the
	// image trusts (update.repository); later roots rotate from it.
	RepoRootFile = "/etc/pqbranch/repo-root.json"
)

// Profiles.
const (
	Dev  = "dev"
	Prod = "prod"
)

// Faults a dev test image can carry, to prove that a bad trial slot is
// rolled back. A prod image never carries one.
const (
	FaultUnhealthy = "unhealthy" // the appliance never reports healthy
	FaultPanic     = "panic"     // init panics the kernel right after the banner
	FaultHang      = "hang"      // init hangs with the watchdog armed
	// FaultRejectConfig: the appliance's validator refuses the installed
	// config, as a release whose validator no longer accepts it would.
	FaultRejectConfig = "rejectconfig"
)

// Release describes one build.
type Release struct {
	Version string `json:"version"` // e.g. "0.1.0+g1a2b3c4d5e6f"
	Board   string `json:"board"`
	Profile string `json:"profile"` // Dev or Prod
	Kernel  string `json:"kernel"`  // kernel release, e.g. "6.1.0-56-amd64"
	// BuildID is the hex SHA-256 of the slot image: the identity of the bits
	// a slot holds, whatever the version string says.
	BuildID string `json:"build_id,omitempty"`
	// SecurityVersion is the anti-rollback counter: a device refuses a
	// bundle whose security version is below the floor it has committed.
	SecurityVersion uint64 `json:"security_version"`
	// Epoch is SOURCE_DATE_EPOCH, the commit time: it orders releases.
	Epoch int64 `json:"epoch"`
	// DevKey marks a build signed with a development key.
	DevKey bool `json:"dev_key,omitempty"`
	// Fault is set only in dev test images (see the Fault constants).
	Fault string `json:"fault,omitempty"`
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks the fields a reader relies on; name is used in errors.
func (r Release) Validate(name string) error {
	switch {
	case r.Version == "":
		return fmt.Errorf("%s: field \"version\": missing", name)
	case r.Board == "":
		return fmt.Errorf("%s: field \"board\": missing", name)
	case r.Profile != Dev && r.Profile != Prod:
		return fmt.Errorf("%s: field \"profile\": is %q; expected %q or %q", name, r.Profile, Dev, Prod)
	case r.BuildID != "" && !hexID.MatchString(r.BuildID):
		return fmt.Errorf("%s: field \"build_id\": is %q; expected 64 lower-case hex digits", name, r.BuildID)
	case r.Fault != "" && r.Profile != Dev:
		return fmt.Errorf("%s: field \"fault\": only dev images carry a fault", name)
	case r.Fault != "" && !slices.Contains([]string{FaultUnhealthy, FaultPanic, FaultHang, FaultRejectConfig}, r.Fault):
		return fmt.Errorf("%s: field \"fault\": is %q; expected %q, %q, %q or %q", name, r.Fault, FaultUnhealthy, FaultPanic, FaultHang, FaultRejectConfig)
	}
	return nil
}

// Marshal encodes the release as the build writes it.
func (r Release) Marshal() []byte {
	b, _ := json.MarshalIndent(r, "", "  ") // plain fields: cannot fail
	return append(b, '\n')
}

// Parse decodes and validates a release; name is used in errors. Unknown
// fields are errors: a misspelt field must not silently read as zero.
func Parse(name string, b []byte) (Release, error) {
	var r Release
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Release{}, fmt.Errorf("%s: %w", name, err)
	}
	return r, r.Validate(name)
}

// Read reads a release file.
func Read(path string) (Release, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Release{}, fmt.Errorf("release: %w", err)
	}
	return Parse(path, b)
}
