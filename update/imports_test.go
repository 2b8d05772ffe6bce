// Package update_test holds the rule that keeps the update code reusable:
// update/* never imports the appliance (services/*), the build (firmware/*)
// or the test world (qemu/*). The appliance and the build wire it in.
package update_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pqbranch/pqbranch/"

func TestUpdateImportsNoServicesFirmwareOrQEMU(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(pkg, module+"update") {
			continue
		}
		checked++
		for _, imp := range strings.Fields(imports) {
			for _, banned := range []string{"services", "firmware", "qemu"} {
				if imp == module+banned || strings.HasPrefix(imp, module+banned+"/") {
					t.Errorf("%s imports %s: update/* must not import %s/*", pkg, imp, banned)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list found no update packages: the rule checked nothing")
	}
}
