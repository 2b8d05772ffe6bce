// Package store keeps the fleet's state: enrolled devices and their report
// keys, the reports they send, and each release's rollout state with a
// log of why it changed. One SQL implementation serves two databases: an
// embedded SQLite file (modernc.org/sqlite, pure Go) by default, and
// PostgreSQL (jackc/pgx/v5) for a fleet that outgrows one machine, where
// several report endpoints and controllers share one database.
package store

import (
	"context"
	"crypto/ed25519"
	"errors"
	"time"

	"github.com/pqbranch/pqbranch/update/fleet/report"
	"github.com/pqbranch/pqbranch/update/rollout"
)

// Device is an enrolled device.
type Device struct {
	ID    string
	Board string
	Group string
	Key   ed25519.PublicKey // verifies its reports
}

// Event is one change of a rollout's state, with why.
type Event struct {
	Version string
	At      time.Time
	State   rollout.State
	Note    string
}

// Errors, for errors.Is.
var (
	ErrUnknownDevice = errors.New("device is not enrolled")
	ErrReplay        = errors.New("report sequence number not above the last accepted one (replayed report)")
)

// Store is the fleet's state. Every method is safe for concurrent use, and
// for use by several processes sharing one PostgreSQL database.
type Store interface {
	// Enroll adds devices or replaces their board, group and key.
	Enroll(ctx context.Context, devs ...Device) error
	Device(ctx context.Context, id string) (Device, error)
	// Devices lists the enrolled devices of a board ("" for all), by id.
	Devices(ctx context.Context, board string) ([]Device, error)

	// AddReport records a verified report. It returns ErrUnknownDevice or
	// ErrReplay (the device's sequence number did not grow).
	AddReport(ctx context.Context, r report.Report, raw []byte, received time.Time) error
	// Outcomes is the latest reported outcome per device for updates to
	// version.
	Outcomes(ctx context.Context, version string) (map[string]report.Outcome, error)
	// ReportCount is the number of reports stored.
	ReportCount(ctx context.Context) (int64, error)

	// Rollout is a release's rollout state; ok is false when the store has
	// none.
	Rollout(ctx context.Context, version string) (st rollout.State, ok bool, err error)
	// Rollouts lists the versions with a rollout state.
	Rollouts(ctx context.Context) ([]string, error)
	// UpdateRollout runs fn with the current state (Pending if none) under
	// a lock that serializes every rollout change of every process using
	// the store, and stores the state fn returns with an event carrying
	// note at time at, unless the state is unchanged and note is empty (then nothing
	// is written: fn only needed the lock). fn typically publishes the new state to the
	// repository: an error from fn leaves the stored state unchanged. The
	// lock is what keeps two controllers from opening a wave twice.
	UpdateRollout(ctx context.Context, version string, at time.Time, fn func(cur rollout.State) (next rollout.State, note string, err error)) (rollout.State, error)
	// Events lists a release's rollout changes, oldest first.
	Events(ctx context.Context, version string) ([]Event, error)

	Close() error
}
