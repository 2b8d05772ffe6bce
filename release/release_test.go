package release

import (
	"strings"
	"testing"
)

func validRelease() Release {
	return Release{Version: "0.1.0+g1a2b3c4d5e6f", Board: "qemu-x86_64", Profile: Dev, Kernel: "6.1.0-56-amd64", SecurityVersion: 1, Epoch: 1700000000}
}

// TestValidate: every fault is accepted in a dev image only, and each
// refusal names the file, the field and what was expected.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Release)
		want string // "": valid
	}{
		{"plain dev", func(*Release) {}, ""},
		{"plain prod", func(r *Release) { r.Profile = Prod }, ""},
		{"fault unhealthy", func(r *Release) { r.Fault = FaultUnhealthy }, ""},
		{"fault panic", func(r *Release) { r.Fault = FaultPanic }, ""},
		{"fault hang", func(r *Release) { r.Fault = FaultHang }, ""},
		{"fault rejectconfig", func(r *Release) { r.Fault = FaultRejectConfig }, ""},
		{"build id", func(r *Release) { r.BuildID = strings.Repeat("ab", 32) }, ""},
		{"no version", func(r *Release) { r.Version = "" }, `rel.json: field "version": missing`},
		{"no board", func(r *Release) { r.Board = "" }, `rel.json: field "board": missing`},
		{"bad profile", func(r *Release) { r.Profile = "test" }, `rel.json: field "profile": is "test"; expected "dev" or "prod"`},
		{"bad build id", func(r *Release) { r.BuildID = strings.Repeat("AB", 32) }, `rel.json: field "build_id": is "` + strings.Repeat("AB", 32) + `"; expected 64 lower-case hex digits`},
		{"fault in prod", func(r *Release) { r.Profile, r.Fault = Prod, FaultRejectConfig }, `rel.json: field "fault": only dev images carry a fault`},
		{"unknown fault", func(r *Release) { r.Fault = "reject-config" }, `rel.json: field "fault": is "reject-config"; expected "unhealthy", "panic", "hang" or "rejectconfig"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRelease()
			tc.edit(&r)
			err := r.Validate("rel.json")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestParseRoundTrip: what the build writes, init reads back unchanged,
// fault included.
func TestParseRoundTrip(t *testing.T) {
	r := validRelease()
	r.Fault = FaultRejectConfig
	got, err := Parse("rel.json", r.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Fatalf("read back %+v, want %+v", got, r)
	}
	if _, err := Parse("rel.json", []byte(`{"version": "1", "board": "b", "profile": "dev", "faults": "hang"}`)); err == nil || !strings.Contains(err.Error(), `unknown field "faults"`) {
		t.Fatalf("misspelt field: %v", err)
	}
}

// FuzzParse: release.json comes from an image or a bundle manifest; any
// bytes yield a valid release or an error, never a panic, and what Parse
// accepts survives Marshal unchanged.
func FuzzParse(f *testing.F) {
	f.Add(validRelease().Marshal())
	r := validRelease()
	r.Fault = FaultRejectConfig
	f.Add(r.Marshal())
	f.Add([]byte(`{"version": "1", "board": "b", "profile": "prod", "fault": "hang"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		again, err := Parse("fuzz", r.Marshal())
		if err != nil || again != r {
			t.Fatalf("accepted %+v, read back %+v, %v", r, again, err)
		}
	})
}
