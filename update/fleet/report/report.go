// Package report is a device's signed report of one update's outcome, as
// the device agent sends it to the fleet's report endpoint, and the HTTP
// client the agent sends it with.
//
// A report is signed with the device's own Ed25519 key, enrolled in the
// fleet's store, so nobody else can report success (or failure) for it;
// a sequence number that only grows stops a replayed report. Ed25519 is
// enough here: a forged report can only hold or advance a rollout, and
// every bundle it could advance to still carries its hybrid signature.
package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Outcome is how an update ended.
type Outcome uint8

const (
	Committed  Outcome = iota + 1 // the new slot booted, was healthy and was committed
	RolledBack                    // the trial failed and the device went back to the old slot
	Failed                        // the update never reached a trial (download, verification, write)
)

var outcomeNames = map[Outcome]string{Committed: "committed", RolledBack: "rolled-back", Failed: "failed"}

func (o Outcome) String() string {
	if n, ok := outcomeNames[o]; ok {
		return n
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// IsFailure reports whether the outcome counts against a rollout.
func (o Outcome) IsFailure() bool { return o == RolledBack || o == Failed }

func (o Outcome) MarshalText() ([]byte, error) {
	if _, ok := outcomeNames[o]; !ok {
		return nil, fmt.Errorf("report: unknown outcome %d", uint8(o))
	}
	return []byte(o.String()), nil
}

func (o *Outcome) UnmarshalText(b []byte) error {
	for k, n := range outcomeNames {
		if n == string(b) {
			*o = k
			return nil
		}
	}
	return fmt.Errorf("outcome %q: expected committed, rolled-back or failed", b)
}

// Report is one update's outcome.
type Report struct {
	Device string `json:"device"`
	// Seq grows with every report the device sends; the store refuses one
	// not above the last it accepted.
	Seq     uint64  `json:"seq"`
	Board   string  `json:"board"`
	From    string  `json:"from"` // version before the update
	To      string  `json:"to"`   // the version the update installed
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason,omitempty"` // why it rolled back or failed
	// Running is the version running when the report was sent: To after a
	// commit, From after a rollback.
	Running  string    `json:"running"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Phase timings, milliseconds.
	DownloadMS int64 `json:"download_ms"`
	InstallMS  int64 `json:"install_ms"`
	TrialMS    int64 `json:"trial_ms"`
}

// Validate checks the fields the controller relies on.
func (r Report) Validate() error {
	switch {
	case r.Device == "":
		return fmt.Errorf("report: field \"device\": missing")
	case r.Seq == 0:
		return fmt.Errorf("report from %s: field \"seq\": is 0; expected 1 or more", r.Device)
	case r.To == "":
		return fmt.Errorf("report from %s: field \"to\": missing", r.Device)
	case r.Outcome == 0:
		return fmt.Errorf("report from %s: field \"outcome\": missing", r.Device)
	case r.Finished.Before(r.Started):
		return fmt.Errorf("report from %s: field \"finished\": before \"started\"", r.Device)
	case r.DownloadMS < 0 || r.InstallMS < 0 || r.TrialMS < 0:
		return fmt.Errorf("report from %s: negative timing", r.Device)
	}
	return nil
}

// Envelope is the wire form: the report's exact bytes and the signature
// over them.
type Envelope struct {
	Report json.RawMessage `json:"report"`
	Sig    []byte          `json:"sig"` // Ed25519 over context || report bytes, base64
}

// sigContext separates report signatures from anything else a device key
// might sign.
const sigContext = "pqbranch fleet report v1\x00"

// MaxSize bounds an envelope; the endpoint reads no more.
const MaxSize = 16 << 10

// Errors, for errors.Is.
var (
	ErrFormat    = errors.New("malformed report")
	ErrSignature = errors.New("report signature does not verify with the device's enrolled key")
)

// Sign returns the envelope bytes of r signed with the device key.
func Sign(r Report, key ed25519.PrivateKey) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{Report: body, Sig: ed25519.Sign(key, append([]byte(sigContext), body...))})
}

// Parse reads an envelope strictly: the report inside is returned
// unverified, for the caller to look up the device's key and Verify.
func Parse(data []byte) (Report, Envelope, error) {
	var env Envelope
	if len(data) > MaxSize {
		return Report{}, env, fmt.Errorf("%w: %d bytes; at most %d", ErrFormat, len(data), MaxSize)
	}
	if err := strict(data, &env); err != nil {
		return Report{}, env, fmt.Errorf("%w: envelope: %v", ErrFormat, err)
	}
	if len(env.Sig) != ed25519.SignatureSize {
		return Report{}, env, fmt.Errorf("%w: field \"sig\": is %d bytes; expected %d", ErrFormat, len(env.Sig), ed25519.SignatureSize)
	}
	var r Report
	if err := strict(env.Report, &r); err != nil {
		return Report{}, env, fmt.Errorf("%w: field \"report\": %v", ErrFormat, err)
	}
	if err := r.Validate(); err != nil {
		return Report{}, env, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return r, env, nil
}

// Verify checks the envelope's signature with the device's enrolled key.
func (e Envelope) Verify(device string, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, append([]byte(sigContext), e.Report...), e.Sig) {
		return fmt.Errorf("report for device %s: %w: someone other than the device sent it, or it was altered", device, ErrSignature)
	}
	return nil
}

func strict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}
