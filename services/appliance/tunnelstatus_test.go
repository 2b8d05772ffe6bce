package appliance

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/status"
)

// fixedTunnel reports one state, as a tunnel service with or without a
// session would.
type fixedTunnel struct {
	Tunnel
	state string
}

func (f fixedTunnel) Status() status.TunnelStatus { return status.TunnelStatus{State: f.state} }

// TestTunnelStatusFollowsConfig: a box whose config has no tunnel reports
// "not configured", never "down" (the prod first-boot default has none);
// with a tunnel configured, the tunnel service's own state is shown.
func TestTunnelStatusFollowsConfig(t *testing.T) {
	def, err := os.ReadFile(filepath.Join("..", "..", "boards", "qemu-x86_64.config.json"))
	if err != nil {
		t.Fatal(err)
	}
	noTunnel, err := os.ReadFile(filepath.Join("..", "..", "boards", "generic-x86_64.config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file []byte // nil: no config loaded
		want string
	}{
		{"no config loaded", nil, status.TunnelNotConfigured},
		{"config without a tunnel", noTunnel, status.TunnelNotConfigured},
		{"config with a tunnel", def, "down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pqbranch.json")
			store := config.NewStore(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tc.file != nil {
				if err := os.WriteFile(path, tc.file, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := store.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			a := &Appliance{store: store, opts: Options{Tunnel: fixedTunnel{state: "down"}}}
			if got := a.tunnelStatus().State; got != tc.want {
				t.Errorf("tunnel state %q, want %q", got, tc.want)
			}
		})
	}
}
