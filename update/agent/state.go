package agent

import (
	"fmt"
	"time"
)

// State is where the agent is in an update's life. The zero value is Idle.
type State uint8

const (
	Idle        State = iota // nothing to do: no update staged or running
	Checking                 // fetching and verifying a bundle header
	Downloading              // writing verified chunks into the inactive slot
	Verifying                // reading the inactive slot back and hashing it
	Staged                   // the inactive slot holds a verified release; waiting for the window
	Rebooting                // BootNext is set (or a failed trial is being left); reboot requested
	Trial                    // running the new slot once; waiting for it to be healthy
	Committed                // the trial slot became the default
	RolledBack               // the trial failed; the old slot runs and stays the default
	Failed                   // the last check or download failed; Reason says why
)

var stateNames = [...]string{
	Idle:        "idle",
	Checking:    "checking",
	Downloading: "downloading",
	Verifying:   "verifying",
	Staged:      "staged",
	Rebooting:   "rebooting",
	Trial:       "trial",
	Committed:   "committed",
	RolledBack:  "rolled-back",
	Failed:      "failed",
}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText makes the state read as its name in the status JSON.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("agent: state %d: no name", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText is the inverse of MarshalText, for the CLI.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("agent: state %q: unknown; expected one of %v", b, stateNames)
}

// busy reports whether the agent is writing or reading the inactive slot.
func (s State) busy() bool { return s == Checking || s == Downloading || s == Verifying }

// Outcome names a finished update attempt in a Result.
type Outcome string

const (
	OutcomeCommitted  Outcome = "committed"
	OutcomeRolledBack Outcome = "rolled-back"
	OutcomeCancelled  Outcome = "cancelled"
)

// Result is the record of the last finished update attempt.
type Result struct {
	Result Outcome   `json:"result"`
	At     time.Time `json:"at"`
	From   string    `json:"from,omitempty"` // version that ran before
	To     string    `json:"to,omitempty"`   // version that was tried
	Reason string    `json:"reason,omitempty"`
}

// Status is what `pqbranch update status` shows. It is a snapshot: the
// agent never hands out its live copy.
type Status struct {
	State   State  `json:"state"`
	Slot    string `json:"slot"`               // booted slot
	Version string `json:"version"`            // running release
	BuildID string `json:"build_id,omitempty"` // running build
	Target  string `json:"target,omitempty"`   // release being downloaded, staged or tried
	Source  string `json:"source,omitempty"`   // URL or file of the target bundle

	Bytes   int64   `json:"bytes"`   // payload bytes in the inactive slot so far
	Total   int64   `json:"total"`   // payload size
	Percent float64 `json:"percent"` // 100*Bytes/Total
	Rate    float64 `json:"rate"`    // bytes per second over this download session

	WaitUntil time.Time `json:"wait_until,omitzero"` // staged: when the reboot is planned
	Reason    string    `json:"reason,omitempty"`    // why the state is what it is (errors, rollbacks)
	Channel   string    `json:"channel,omitempty"`   // TLS version and key exchange of the last fetch

	SecurityFloor uint64  `json:"security_floor"`
	Window        string  `json:"window"`
	Last          *Result `json:"last,omitempty"`

	// Fleet: the identity an operator enrols (pqfleet enroll -device
	// DeviceID -key ReportKey), and the last repository check-in.
	DeviceID   string    `json:"device_id,omitempty"`
	ReportKey  string    `json:"report_key,omitempty"` // hex Ed25519 public key that signs outcome reports
	Repository string    `json:"repository,omitempty"`
	CheckedIn  time.Time `json:"checked_in,omitzero"`
	Offer      string    `json:"offer,omitempty"` // the last check-in's decision and why
	// ReportsPending counts outcome reports not yet accepted by the report
	// endpoint; ReportError is why the last attempt failed.
	ReportsPending int    `json:"reports_pending,omitempty"`
	ReportError    string `json:"report_error,omitempty"`
}
