package ike

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

const testPSK = "0123456789abcdef-test-psk"

// startResponder runs an in-process responder until the test ends.
func startResponder(t testing.TB, rc ikeresp.Config) *ikeresp.Responder {
	t.Helper()
	if rc.ID == "" {
		rc.ID = "edge.example"
	}
	if rc.PSK == nil && rc.Signer == nil {
		rc.PSK = []byte(testPSK)
	}
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

func tunnelConfig(r *ikeresp.Responder) *Config { return tunnelConfigTo(r.Addr()) }

// tunnelConfigTo is the tests' PSK tunnel towards the edge at remote.
func tunnelConfigTo(remote netip.AddrPort) *Config {
	return &Config{
		LocalID: "branch1.example", RemoteID: "edge.example", Remote: remote.String(),
		Auth: "psk", PSK: NewSecret(testPSK),
		LocalSubnets:  mustPrefixes("198.18.1.0/24", "198.18.2.0/24"),
		RemoteSubnets: mustPrefixes("198.18.0.0/24", "198.19.0.0/16"),
	}
}

func testOptions(t testing.TB, r *ikeresp.Responder) (Options, *xfrm.Memory) {
	mem := xfrm.NewMemory()
	var logger *slog.Logger
	if tt, ok := t.(*testing.T); ok {
		logger = slog.New(slog.NewTextHandler(tt.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	} else {
		logger = slog.New(slog.DiscardHandler)
	}
	return Options{Installer: mem, Logger: logger, RemoteNATPort: r.NATPort(),
		RetransmitBase: 40 * time.Millisecond, RetransmitTries: 4,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond}, mem
}

func newSession(t testing.TB, cfg *Config, opt Options) *Session {
	t.Helper()
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkKeysAgree proves both ends derived the same ESP keys for every SA the
// initiator installed.
func checkKeysAgree(t *testing.T, mem *xfrm.Memory, r *ikeresp.Responder, wantSAs int) {
	t.Helper()
	sas := mem.SAs()
	if len(sas) != wantSAs {
		t.Fatalf("%d SAs installed, want %d", len(sas), wantSAs)
	}
	theirs := r.Stats().ChildKeys
	for _, sa := range sas {
		k, ok := theirs[sa.SPI]
		if !ok {
			t.Fatalf("responder has no SA %08x", sa.SPI)
		}
		if !bytes.Equal(k, sa.Key) || len(sa.Key) != 36 {
			t.Fatalf("SA %08x: keys differ between the ends", sa.SPI)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = netip.Addr{}
