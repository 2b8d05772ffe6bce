package status

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestNoIKEStack keeps the status command (and the config loader it reads)
// from compiling the IKE stack: host tools print reports, they need neither its
// crypto nor netlink. Only the tunnel config's leaf package may be imported.
func TestNoIKEStack(t *testing.T) {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goCmd, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const ike = "github.com/pqbranch/pqbranch/services/ike"
	const leaf = ike + "/ikeconf"
	sawLeaf := false
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == leaf:
			sawLeaf = true
		case p == ike || strings.HasPrefix(p, ike+"/"):
			t.Errorf("services/status depends on %s; only %s may be imported", p, leaf)
		}
	}
	if !sawLeaf {
		// The test's premise: status reads the config, whose tunnel section is
		// ikeconf. If that changes, the check above proves nothing.
		t.Errorf("services/status no longer depends on %s; revisit this test", leaf)
	}
}
