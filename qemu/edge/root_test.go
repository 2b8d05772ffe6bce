package edge

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRoots builds (or reuses) both roots and checks the daemon that runs
// from them: strongSwan 6.1 with the three ML-KEM methods, and 5.9 without.
func TestRoots(t *testing.T) {
	needRoot(t)
	cache := testCache(t)
	for _, tc := range []struct {
		distro  Distro
		version *regexp.Regexp
		mlkem   bool
	}{
		{Forky, regexp.MustCompile(`^strongSwan 6\.1\.\d+ charon`), true},
		{Bookworm, regexp.MustCompile(`^strongSwan 5\.9\.\d+ charon`), false},
	} {
		t.Run(string(tc.distro), func(t *testing.T) {
			ctx := testCtx(t, 15*time.Minute)
			start := time.Now()
			root, err := cache.Root(ctx, tc.distro)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("root %s ready in %s", root, time.Since(start).Round(time.Millisecond))
			if !complete(root) {
				t.Fatalf("root %s has no completion marker", root)
			}

			ns := newNS(t, ctx, "roots")
			start = time.Now()
			e := startEdge(t, ctx, Options{NS: ns, Distro: tc.distro, Cache: cache, LocalAddrs: "192.0.2.1", Auth: Auth{PSK: "roots test"}})
			t.Logf("edge started in %s", time.Since(start).Round(time.Millisecond))
			v, err := e.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.version.MatchString(v) {
				t.Errorf("daemon version %q does not match %s", v, tc.version)
			}
			algs, err := e.Algorithms(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ke := keSection(algs)
			for _, m := range []string{"ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"} {
				if got := strings.Contains(ke, m); got != tc.mlkem {
					t.Errorf("ke: section lists %s = %v, want %v:\n%s", m, got, tc.mlkem, ke)
				}
			}
			if !strings.Contains(ke, "CURVE_25519") {
				t.Errorf("ke: section lacks CURVE_25519:\n%s", ke)
			}
			// The load list reached charon: libipsec is in, before netlink.
			stats, err := e.Swanctl(ctx, "--stats")
			if err != nil {
				t.Fatal(err)
			}
			ipsec, netlink := strings.Index(stats, "kernel-libipsec"), strings.Index(stats, "kernel-netlink")
			if ipsec < 0 || netlink < 0 || ipsec > netlink {
				t.Errorf("plugins: kernel-libipsec must be loaded before kernel-netlink:\n%s", stats)
			}
		})
	}
}

// keSection cuts the "ke:" block out of `swanctl --list-algs`.
func keSection(algs string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(algs, "\n") {
		if !strings.HasPrefix(line, " ") {
			in = strings.HasPrefix(line, "ke:") || strings.HasPrefix(line, "dh:")
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
