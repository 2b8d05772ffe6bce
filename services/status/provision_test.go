package status

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/provision"
)

// TestProvisionSection: the boot's USB stick check reaches the JSON report,
// its LAN summary and the printed status; a box that ran none has no section.
func TestProvisionSection(t *testing.T) {
	src := sources()
	src.Provision = &provision.Result{Outcome: provision.Rejected, Device: "sda1",
		Errors: []string{"usb sda1:/pqbranch.json: mtu: expected 1280..9000, got 100"}, At: time.Now()}

	r := src.Collect()
	b, err := json.Marshal(r.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Provision map[string]any `json:"provision"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Provision["outcome"] != "rejected" || m.Provision["device"] != "sda1" ||
		!strings.Contains(m.Provision["errors"].([]any)[0].(string), "mtu: expected 1280..9000") {
		t.Errorf("provision section of the LAN summary: %s", b)
	}

	var out bytes.Buffer
	if err := Print(&out, &r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"usb stick: rejected sda1", "  usb sda1:/pqbranch.json: mtu: expected 1280..9000, got 100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}

	rec := httptest.NewRecorder()
	Handler(sources()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	if strings.Contains(rec.Body.String(), `"provision"`) {
		t.Errorf("a report without a stick check has a provision section: %s", rec.Body)
	}
}
