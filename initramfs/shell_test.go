package initramfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// The dev console's shell (u-root's gosh) reads lines with bubbline, on
// bubbletea. Before v0.25.0, bubbletea's renderer could deadlock when a
// program ended (stop held the renderer's lock while its ticker waited for
// it), and the shell then hung after a command was entered, now and then:
// the lab's console tests saw it as a command that never ran. The busybox
// build takes the versions from this module's go.mod, so it must not fall
// back to an older one (a `go get` that downgrades it fails here).
func TestShellLineEditorHasTheRendererFix(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	const path, fixed = "github.com/charmbracelet/bubbletea", "v0.25.0"
	for _, r := range f.Require {
		if r.Mod.Path == path {
			if semver.Compare(r.Mod.Version, fixed) < 0 {
				t.Fatalf("go.mod requires %s %s; the shell needs %s or later (renderer deadlock on exit)", path, r.Mod.Version, fixed)
			}
			return
		}
	}
	t.Fatalf("go.mod does not require %s: the busybox build would pick its version from u-root's go.mod", path)
}
