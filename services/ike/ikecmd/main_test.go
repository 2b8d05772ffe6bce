package ikecmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike"
	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// writeConfig takes the config package's full example and points its
// tunnel at addr.
func writeConfig(t *testing.T, remote string, mutate func(map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile("../../config/testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	tun := doc["tunnel"].(map[string]any)
	tun["remote"], tun["psk"] = remote, "correct-horse-battery-staple-7"
	if mutate != nil {
		mutate(tun)
	}
	out, _ := json.Marshal(doc)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func responder(t *testing.T, rc ikeresp.Config) *ikeresp.Responder {
	rc.ID, rc.PSK = "edge.example", []byte("correct-horse-battery-staple-7")
	r, err := ikeresp.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func TestOnceNoInstall(t *testing.T) {
	r := responder(t, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	path := writeConfig(t, r.Addr().String(), nil)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-config", path, "-once", "-no-install"}, &stdout, &stderr,
		func(o *ike.Options) { o.RemoteNATPort = r.NATPort() })
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one JSON line, got %q", stdout.String())
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"ike": "established", "ke": "x25519", "encr": "aes256gcm16", "prf": "prfsha384", "esp": "aes256gcm16"}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s = %v, want %v", k, st[k], v)
		}
	}
	if addke, _ := st["addke"].([]any); len(addke) != 1 || addke[0] != "mlkem768" {
		t.Errorf("addke = %v", st["addke"])
	}
	if strings.Contains(stdout.String()+stderr.String(), "correct-horse") {
		t.Error("output leaks the PSK")
	}
	if !strings.Contains(stderr.String(), "type=IKE_INTERMEDIATE") {
		t.Error("no log line for the IKE_INTERMEDIATE exchange")
	}
}

func TestOnceRefusesClassical(t *testing.T) {
	r := responder(t, ikeresp.Config{}) // no ML-KEM
	path := writeConfig(t, r.Addr().String(), nil)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-config", path, "-once", "-no-install"}, &stdout, &stderr,
		func(o *ike.Options) { o.RemoteNATPort = r.NATPort() })
	if err == nil || !strings.Contains(err.Error(), "ML-KEM") {
		t.Fatalf("err = %v", err)
	}
	if stdout.Len() != 0 {
		t.Fatalf("printed %q on failure", stdout.String())
	}
}

func TestBadConfigNamesField(t *testing.T) {
	path := writeConfig(t, "192.0.2.1", func(tun map[string]any) { tun["addke"] = []string{"kyber"} })
	err := run(context.Background(), []string{"-config", path, "-once", "-no-install"}, &bytes.Buffer{}, &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "addke") {
		t.Fatalf("err = %v", err)
	}
}
