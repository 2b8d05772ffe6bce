package firmware

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/pqbranch/pqbranch/firmware/debpkg"
	"github.com/pqbranch/pqbranch/release"
)

// Manifest describes one build's outputs; update bundles and the fleet side
// identify firmware by it.
type Manifest struct {
	// Release is what the image's release.json and the bundle's manifest
	// say; BuildID is the sha256 of the slot image.
	Release   release.Release     `json:"release"`
	Kernel    ManifestKernel      `json:"kernel"`
	Initramfs ManifestInitramfs   `json:"initramfs"`
	Cmdline   string              `json:"cmdline"`
	Artifacts map[string]Artifact `json:"artifacts"`
}

type ManifestKernel struct {
	Package string `json:"package"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Release string `json:"release"`
}

type ManifestInitramfs struct {
	// Compression names each segment's method, e.g. "zstd+xz".
	Compression string `json:"compression"`
	Size        int64  `json:"size"`
	RawSize     int64  `json:"raw_size"`
	// Segments are the compressed sizes of the concatenated archives, in
	// order: the stable base, then the appliance.
	Segments []int64 `json:"segments"`
}

type Artifact struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func (m *Manifest) addArtifacts(dir string, names ...string) error {
	if m.Artifacts == nil {
		m.Artifacts = map[string]Artifact{}
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		sum, err := debpkg.FileSHA256(p)
		if err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		m.Artifacts[n] = Artifact{SHA256: sum, Size: st.Size()}
	}
	return nil
}

func (m *Manifest) write(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadManifest reads a build's manifest.json.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	return &m, json.Unmarshal(b, &m)
}
