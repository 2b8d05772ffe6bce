package initd

import (
	"encoding/json"
	"fmt"
	"os"
)

// Release describes the firmware that is running; the image build writes it.
type Release struct {
	Version string `json:"version"`
	Board   string `json:"board"`
	Profile string `json:"profile"`
	Kernel  string `json:"kernel"`
}

// ReadRelease reads the release file of the running firmware.
func ReadRelease(path string) (Release, error) {
	var r Release
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("release: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("release: %s: %w", path, err)
	}
	return r, nil
}
