package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/fleet/report"
)

// stateFile is the agent's only file: everything it must remember across
// power cuts, in DataDir on the data partition (which survives updates).
const stateFile = "state.json"

// stateFormat is bumped when a field changes meaning.
const stateFormat = 1

// persisted is the content of state.json. The agent writes it whole and
// atomically, so a reader sees the old state or the new one, never a mix.
type persisted struct {
	Format int `json:"format"`
	// SecurityFloor is the highest security version committed on this
	// device: bundles below it are refused (anti-rollback).
	SecurityFloor uint64 `json:"security_floor"`
	// Download is the bundle being written into the inactive slot, or staged there.
	Download *download `json:"download,omitempty"`
	// Trial is set from just before the trial reboot until commit or rollback.
	Trial *trial `json:"trial,omitempty"`
	// Failed lists builds whose trial failed: never tried again.
	Failed []failedBuild `json:"failed,omitempty"`
	// Rejected is the header of the last bundle refused after its header
	// verified (e.g. a bad chunk): a periodic check does not fetch it again;
	// an explicit check does.
	Rejected *rejected `json:"rejected,omitempty"`
	// Last is the last finished attempt.
	Last *Result `json:"last,omitempty"`
	// ReportSeq is the sequence number of the last outcome report made:
	// the fleet refuses a report whose number does not grow, so it must
	// survive reboots and updates.
	ReportSeq uint64 `json:"report_seq,omitempty"`
	// Reports are outcome reports not yet accepted by the report
	// endpoint, oldest first, at most maxPendingReports. A report is
	// queued in the same write that records the commit or rollback, so a
	// power cut cannot lose it.
	Reports []report.Report `json:"reports,omitempty"`
}

// timing records when an update's phases ended, for its outcome report.
type timing struct {
	Began   time.Time `json:"began,omitzero"`   // the download started (first attempt)
	Written time.Time `json:"written,omitzero"` // every chunk written into the slot
	Staged  time.Time `json:"staged,omitzero"`  // the slot read back and matched
}

type download struct {
	Source  string          `json:"source"` // URL or absolute file path
	Header  string          `json:"header"` // hex SHA-256 of the bundle's header bytes
	Slot    string          `json:"slot"`   // the slot written: the inactive one at the time
	Release release.Release `json:"release"`
	Size    int64           `json:"size"`   // payload bytes
	SHA256  string          `json:"sha256"` // payload hash from the manifest
	Next    int             `json:"next"`   // next chunk to fetch; chunks before it are written and synced
	Staged  bool            `json:"staged"` // the slot was read back and matched SHA256
	Timing  timing          `json:"timing,omitzero"`
}

type trial struct {
	Slot            string    `json:"slot"`
	Version         string    `json:"version"`
	BuildID         string    `json:"build_id"`
	SecurityVersion uint64    `json:"security_version"`
	Epoch           int64     `json:"epoch"`
	From            string    `json:"from"`    // version running when the trial was armed
	Started         time.Time `json:"started"` // when the first trial boot was armed
	// Boots counts trial boots armed so far: a trial gets at most maxTrialBoots.
	Boots int `json:"boots"`
	// Armed is true from SetNext until the next agent start in either slot.
	Armed bool `json:"armed"`
	// Markers written by the trial slot itself, so the old slot can tell
	// how far the last trial boot got.
	ReachedInit time.Time `json:"reached_init,omitzero"`
	LastHealth  string    `json:"last_health,omitempty"` // last "not healthy" reason seen
	Verdict     string    `json:"verdict,omitempty"`     // set when the trial slot gives up on itself
	// Timing is the download's, copied when the trial is armed.
	Timing timing `json:"timing,omitzero"`
}

type failedBuild struct {
	BuildID string    `json:"build_id"`
	Version string    `json:"version"`
	Epoch   int64     `json:"epoch"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
}

type rejected struct {
	Source string `json:"source"`
	Header string `json:"header"`
	Reason string `json:"reason"`
}

// loadState reads state.json; a missing file is a fresh device.
func loadState(dir string) (persisted, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return persisted{Format: stateFormat}, nil
	}
	if err != nil {
		return persisted{}, fmt.Errorf("agent: %w", err)
	}
	// Unknown fields are kept out of the way, not refused: after a rollback
	// the old slot's agent reads what the newer one wrote, and must still
	// learn why the trial failed. An incompatible change bumps "format".
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return persisted{}, fmt.Errorf("agent: %s: %w", path, err)
	}
	if p.Format != stateFormat {
		return persisted{}, fmt.Errorf("agent: %s: field \"format\": is %d; expected %d", path, p.Format, stateFormat)
	}
	return p, nil
}

// saveState replaces state.json atomically and durably: write a temporary
// file, fsync it, rename it over the old one, fsync the directory.
func saveState(dir string, p persisted) error {
	p.Format = stateFormat
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("agent: encode state: %w", err)
	}
	path := filepath.Join(dir, stateFile)
	tmp, err := os.CreateTemp(dir, stateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("agent: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("agent: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("agent: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("agent: fsync %s: %w", dir, err)
	}
	return nil
}

func (p *persisted) failed(buildID string) (failedBuild, bool) {
	for _, f := range p.Failed {
		if f.BuildID == buildID {
			return f, true
		}
	}
	return failedBuild{}, false
}
