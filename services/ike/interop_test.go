package ike

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/qemu/netns"
	vnetns "github.com/vishvananda/netns"
)

// TestInteropStrongSwanPSK runs our initiator in a branch namespace against
// strongSwan 6.1 (Debian forky root from qemu/edge) with X25519+ML-KEM-768
// and PSK. Every namespace and charon is stopped by Cleanup, pass or fail.
func TestInteropStrongSwanPSK(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("real strongSwan edge: needs root, skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cache, err := edge.NewCache(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	branch, err := netns.New(ctx, "brike")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := branch.Close(); err != nil {
			t.Errorf("closing branch namespace: %v", err)
		}
	})
	site, err := edge.NewEdgeSite(ctx, branch, "192.0.2.2/24")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := site.Close(); err != nil {
			t.Errorf("closing edge site: %v", err)
		}
	})
	const psk = "interop-test-psk-0123456789"
	e, err := edge.Start(ctx, edge.Options{
		NS: site.GW, Distro: edge.Forky, Cache: cache, Name: "dc",
		LocalAddrs: edge.EdgeWANAddr, LocalID: "edge.example", RemoteID: "branch1.example",
		Auth:     edge.Auth{PSK: psk},
		Children: []edge.Child{{LocalTS: []string{edge.DCNet}, RemoteTS: []string{"198.18.1.0/24"}, ESPProposals: []string{"aes256gcm16-x25519-ke1_mlkem768"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("charon log:\n%s", e.Log())
		}
		e.Stop()
	})

	cfg := &Config{
		LocalID: "branch1.example", RemoteID: "edge.example", Remote: edge.EdgeWANAddr,
		Auth: "psk", PSK: NewSecret(psk),
		LocalSubnets:  []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")},
		RemoteSubnets: []netip.Prefix{netip.MustParsePrefix(edge.DCNet)},
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), RetransmitBase: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Sockets opened inside Do stay in the branch namespace.
	if err := inNS(t, branch, func() error { return s.Establish(ctx) }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := s.Status()
	if st.State != "established" || st.KE != "x25519" || len(st.AddKE) != 1 || st.AddKE[0] != "mlkem768" {
		t.Fatalf("status %+v", st)
	}
	sas, err := e.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swanctl --list-sas:\n%s", sas)
	for _, want := range []string{"ESTABLISHED", "AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768", "INSTALLED"} {
		if !strings.Contains(sas, want) {
			t.Errorf("list-sas lacks %q", want)
		}
	}
	if _, err := e.WaitLog(ctx, regexp.MustCompile(`IKE_INTERMEDIATE request 1 \[ KE \]`)); err != nil {
		t.Errorf("charon log: %v", err)
	}
	// A PQ child rekey (CREATE_CHILD_SA + IKE_FOLLOWUP_KE) against strongSwan.
	if err := inNS(t, branch, func() error { return s.rekeyChild(ctx, s.children[0]) }); err != nil {
		t.Errorf("child rekey: %v", err)
	}
	if err := inNS(t, branch, func() error { return s.rekeyIKE(ctx) }); err != nil {
		t.Errorf("IKE rekey: %v", err)
	}
	sas, _ = e.ListSAs(ctx)
	t.Logf("after rekeys:\n%s", sas)
	if err := inNS(t, branch, func() error { return s.checkLiveness(ctx) }); err != nil {
		t.Errorf("liveness after rekeys: %v", err)
	}
}

// inNS runs f on a thread inside ns and moves that thread back to our own
// namespace afterwards: netns.Do leaves the thread behind, and if the
// runtime happened to use the main thread for it, netns.Close would later
// see (and kill) this test process as a member of the namespace.
func inNS(t *testing.T, ns *netns.NS, f func() error) error {
	home, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	return ns.Do(func() error {
		defer vnetns.Set(home)
		return f()
	})
}
