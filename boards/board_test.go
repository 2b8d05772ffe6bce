package boards

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedBoardsLoad(t *testing.T) {
	names := Names()
	for _, want := range []string{"qemu-x86_64", "generic-x86_64", "protectli-vp2420"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("board %s missing from %v", want, names)
		}
	}
	for _, n := range names {
		b, err := Load(n)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if _, err := b.ExpandModules(); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// validBoard returns a board file's text with one field replaced.
func validBoard(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("qemu-x86_64.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBadBoardFiles(t *testing.T) {
	good := validBoard(t)
	tests := []struct {
		name, edit, want string
		from, to         string
	}{
		{name: "unknown field", from: `"console":`, to: `"consloe": "x", "console":`, want: `field "consloe": unknown field`},
		{name: "missing kernel", from: `"kernel": {`, to: `"kernel_": {`, want: `field "kernel_": unknown field`},
		{name: "kernel removed", from: `"kernel":`, to: `"ignored_kernel_section_for_test":`, want: `unknown field`},
		{name: "bad sha256", from: `a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1`, to: `A86E`, want: `field "kernel.sha256": is "A86E"; expected 64 lower-case hex digits`},
		{name: "wrong type", from: `"size_mib": 512`, to: `"size_mib": "512"`, want: `field "disk.size_mib": expected int, got JSON string`},
		{name: "bad role", from: `"role": "lan"`, to: `"role": "dmz"`, want: `field "nics[1].role": is "dmz"; expected wan, lan or spare`},
		{name: "bad console", from: `"ttyS0,115200"`, to: `"com1"`, want: `field "console"`},
		{name: "name mismatch", from: `"name": "qemu-x86_64"`, to: `"name": "other"`, want: `field "name": is "other"; expected "qemu-x86_64"`},
		{name: "syntax", from: `"arch": "amd64",`, to: `"arch": "amd64"`, want: `line 5:`},
		{name: "bad module set", from: `"@appliance"`, to: `"@nope"`, want: `modules[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(good, tt.from) {
				t.Fatalf("test edit %q does not apply", tt.from)
			}
			text := strings.Replace(good, tt.from, tt.to, 1)
			path := filepath.Join(t.TempDir(), "qemu-x86_64.json")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := Load(path)
			if err == nil {
				_, err = b.ExpandModules()
			}
			if err == nil {
				t.Fatal("bad board file accepted")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant it to name %s and contain %q", err, path, tt.want)
			}
		})
	}
}

func TestMissingKernelSection(t *testing.T) {
	text := validBoard(t)
	start := strings.Index(text, `"kernel": {`)
	end := strings.Index(text[start:], "},") + start + 2
	path := filepath.Join(t.TempDir(), "qemu-x86_64.json")
	os.WriteFile(path, []byte(text[:start]+text[end:]), 0o644)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), `field "kernel": missing`) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error = %v; want missing kernel naming %s", err, path)
	}
}

func TestUnknownBoardListsKnown(t *testing.T) {
	_, err := Load("no-such-board")
	if err == nil {
		t.Fatal("unknown board accepted")
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %s", err, n)
		}
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("qemu-x86_64.json")
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := Parse("qemu-x86_64.json", data); err == nil {
			if b.Name == "" || len(b.NICs) < 2 {
				t.Fatalf("Parse accepted an invalid board: %+v", b)
			}
		}
	})
}
