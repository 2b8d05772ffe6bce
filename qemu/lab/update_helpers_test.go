package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/firmware"
	"github.com/pqbranch/pqbranch/images"
	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/services/status"
	"github.com/pqbranch/pqbranch/update/agent"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/hybrid"
)

// bundleName is what the qemu-x86_64 board's default config checks
// (update.url): the lab serves whatever the test publishes under it.
const bundleName = "update.pqb"

// labStart is the lab's time when a box first boots: a Saturday noon, a
// day before the default config's window (Sun 02:00-04:00 UTC).
var labStart = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// testRelease is one firmware built for the update tests: only its bundle.
type testRelease struct {
	Version string
	Bundle  string // update.pqb
}

// buildRelease builds the default board from this tree as version, with
// fault baked in ("" for none), into a directory of the test's. Each
// release gets its own epoch, later than the default image's, in the order
// built.
func buildRelease(t *testing.T, version string, epoch int64, fault string) testRelease {
	t.Helper()
	out := t.TempDir()
	var progress bytes.Buffer
	start := time.Now()
	_, err := firmware.Build(context.Background(), firmware.Options{
		Board: boards.Default, RepoDir: repoRoot(t), OutDir: out, CacheDir: firmware.DefaultCacheDir(),
		Progress: &progress, Version: version, Epoch: epoch, Fault: fault, BundleOnly: true,
	})
	if err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, progress.String())
	}
	t.Logf("built %s (fault %q) in %.1fs", version, fault, time.Since(start).Seconds())
	dir := filepath.Join(out, boards.Default)
	return testRelease{Version: version, Bundle: filepath.Join(dir, firmware.BundleName)}
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// defaultRelease is the image `make image` built: every box starts on it.
func defaultRelease(t *testing.T) (release.Release, string) {
	t.Helper()
	img, _ := defaultImage(t)
	m, err := firmware.ReadManifest(filepath.Join(filepath.Dir(img), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m.Release, img
}

// startUpdateLab starts the lab around one box flashed with the default
// image; see startBoxLab.
func startUpdateLab(ctx context.Context, t *testing.T) *Lab {
	t.Helper()
	img, _ := defaultImage(t)
	return startBoxLab(ctx, t, img)
}

// startHealthyBox starts the update lab and waits until its box, flashed
// with the default image, runs version healthy from slot A with its boot
// entries steady.
func startHealthyBox(ctx context.Context, t *testing.T, version string) *Lab {
	t.Helper()
	l := startUpdateLab(ctx, t)
	waitBanner(ctx, t, l, 0)
	r := healthyOn(ctx, t, l, version, "A")
	checkBootSteady(t, r.Update, "A")
	return l
}

// startBoxLab starts the lab around one box flashed with img, whose disk
// and NVRAM are kept in a directory of the test's, so the box can lose
// power and boot again, with the lab's clock at labStart.
func startBoxLab(ctx context.Context, t *testing.T, img string) *Lab {
	t.Helper()
	b, err := boards.Load(boards.Default)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Start(ctx, Options{Board: b, Image: img, Progress: testWriter{t}, StateDir: t.TempDir(), Time: labStart})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("appliance console:\n%s", consoleTail(l, 150))
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab teardown: %v", err)
		}
	})
	return l
}

// waitBanner waits for the banner of a boot after mark and returns the
// version and slot it names.
func waitBanner(ctx context.Context, t *testing.T, l *Lab, mark int) (version, slot string) {
	t.Helper()
	re := regexp.MustCompile(`^pqbranch (\S+) board=qemu-x86_64 slot=([AB?])$`)
	line, err := l.VM.WaitLineAfter(ctx, mark, re)
	if err != nil {
		t.Fatalf("no boot banner: %v\nconsole:\n%s", err, consoleTail(l, 80))
	}
	m := re.FindStringSubmatch(line)
	return m[1], m[2]
}

// waitUpdate polls the status report until ok accepts its update section.
func waitUpdate(ctx context.Context, t *testing.T, l *Lab, what string, d time.Duration, ok func(u status.UpdateStatus) bool) *status.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	r, err := l.WaitStatus(ctx, func(r *status.Report) bool { return ok(r.Update) })
	if err != nil {
		u := "no report"
		if r != nil {
			b, _ := json.Marshal(r.Update)
			u = string(b)
		}
		t.Fatalf("%s: %v\nupdate status: %s\nconsole:\n%s", what, err, u, consoleTail(l, 80))
	}
	return r
}

// console types a command on the dev image's console shell.
func console(ctx context.Context, t *testing.T, l *Lab, cmd string) {
	t.Helper()
	if err := l.Command(ctx, cmd); err != nil {
		t.Fatal(err)
	}
}

// retype types a command where the box may be rebooting, with no shell to
// type to: one try, a failure is only logged, and the caller types it
// again later.
func retype(ctx context.Context, t *testing.T, l *Lab, cmd string) {
	t.Helper()
	if err := l.TryCommand(ctx, cmd); err != nil {
		t.Logf("%v (the box may be rebooting; typed again later)", err)
	}
}

// moveClock makes the box's clock say at: the lab's time server says so,
// and restarting the time service makes the box ask at once.
func moveClock(ctx context.Context, t *testing.T, l *Lab, at time.Time) {
	t.Helper()
	l.SetTime(at)
	mark := l.VM.Mark()
	console(ctx, t, l, "crash time")
	if _, err := l.VM.WaitLineAfter(ctx, mark, regexp.MustCompile(`crash: time crashed`)); err != nil {
		t.Fatalf("restarting the time service: %v", err)
	}
	if _, err := l.WaitStatus(ctx, func(r *status.Report) bool { return r.Time.Sub(at).Abs() < time.Minute }); err != nil {
		t.Fatalf("the box's clock did not move to %v: %v", at, err)
	}
}

// checkBootSteady asserts what a rejected or unfinished update must leave
// as it was: the box runs slot, which is first in BootOrder, and no trial
// boot is armed.
func checkBootSteady(t *testing.T, u status.UpdateStatus, slot string) {
	t.Helper()
	if u.Slot != slot || len(u.BootOrder) != 2 || u.BootOrder[0] != slot || u.BootNext != "" {
		t.Errorf("boot entries changed: running %s, BootOrder %v, BootNext %q; want %s first and no BootNext", u.Slot, u.BootOrder, u.BootNext, slot)
	}
}

// healthyOn waits until the box runs version from slot with its tunnel up
// and its config from /data in force: a good slot, config intact.
func healthyOn(ctx context.Context, t *testing.T, l *Lab, version, slot string) *status.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	r, err := l.WaitStatus(ctx, func(r *status.Report) bool {
		return r.Version == version && r.Slot == slot && Established(r) && r.Config.Loaded && !r.Config.Defaults
	})
	if err != nil {
		t.Fatalf("the box is not healthy on %s in slot %s: %v\nconsole:\n%s", version, slot, err, consoleTail(l, 80))
	}
	if len(r.Config.Errors) > 0 || r.Hostname != "pqbranch" {
		t.Errorf("config not intact: hostname %q, errors %v", r.Hostname, r.Config.Errors)
	}
	return r
}

// mutant is a bundle changed the way an attacker or a broken transfer
// would change it.
type mutant struct {
	name string
	make func(t *testing.T, good []byte) []byte
	// reason is what the agent's refusal must say, and no other's: the
	// status still shows the previous refusal until the new one lands.
	reason string
}

// bundleFrame splits a bundle into its framing, manifest, signature block
// and payload (update/README.md).
func bundleFrame(t *testing.T, b []byte) (manifest []byte, sig bundle.Signature, payload []byte) {
	t.Helper()
	m := binary.BigEndian.Uint32(b[12:16])
	s := binary.BigEndian.Uint32(b[16:20])
	manifest = b[20 : 20+m]
	if err := json.Unmarshal(b[20+m:20+m+s], &sig); err != nil {
		t.Fatalf("signature block: %v", err)
	}
	return manifest, sig, b[20+m+s:]
}

// reframe builds a bundle from its parts.
func reframe(manifest, sigBlock, payload []byte) []byte {
	h := make([]byte, 20)
	copy(h, bundle.Magic)
	binary.BigEndian.PutUint32(h[8:], bundle.Format)
	binary.BigEndian.PutUint32(h[12:], uint32(len(manifest)))
	binary.BigEndian.PutUint32(h[16:], uint32(len(sigBlock)))
	return slices.Concat(h, manifest, sigBlock, payload)
}

// withSig replaces the composite signature's bytes.
func withSig(t *testing.T, good []byte, f func(sig []byte) []byte) []byte {
	manifest, sig, payload := bundleFrame(t, good)
	sig.Sig = f(slices.Clone(sig.Sig))
	block, err := json.Marshal(sig)
	if err != nil {
		t.Fatal(err)
	}
	return reframe(manifest, block, payload)
}

// resigned writes a bundle of the default image's slot with rel, signed
// by key: what the refusals below look at is the header.
func resigned(t *testing.T, rel release.Release, key *hybrid.PrivateKey) []byte {
	t.Helper()
	_, disk := defaultRelease(t)
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	slot := images.SlotReader(f)
	var buf bytes.Buffer
	if _, err := bundle.Write(&buf, rel, slot, images.SlotMiB*images.MiB, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// devKey is the development key `make image` signs with, which the
// default image trusts.
func devKey(t *testing.T) *hybrid.PrivateKey {
	t.Helper()
	k, _, err := hybrid.ReadPrivateKey(firmware.DevKeyPath(firmware.DefaultCacheDir()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mutants are the eight bundles every box must refuse (issue: "rejected
// bundles, 8 of 8"), made from the good bundle of next, a release the box
// would otherwise install.
func mutants(t *testing.T, next testRelease, running release.Release) []mutant {
	mldsaLen := len(hybridSig(t, next.Bundle)) - 64
	return []mutant{
		{"bad Ed25519 signature", func(t *testing.T, b []byte) []byte {
			return withSig(t, b, func(s []byte) []byte { s[len(s)-1] ^= 1; return s })
		}, "Ed25519 half"},
		{"bad ML-DSA signature", func(t *testing.T, b []byte) []byte {
			return withSig(t, b, func(s []byte) []byte { s[100] ^= 1; return s })
		}, "ML-DSA half"},
		{"Ed25519 signature stripped", func(t *testing.T, b []byte) []byte {
			return withSig(t, b, func(s []byte) []byte { return s[:mldsaLen] })
		}, fmt.Sprintf("is %d bytes; expected %d", mldsaLen, mldsaLen+64)},
		{"truncated", func(t *testing.T, b []byte) []byte { return b[:len(b)*2/3] }, "truncated"},
		{"flipped payload bit", func(t *testing.T, b []byte) []byte {
			// In the last stored chunk: after any position a download
			// of the same header (the truncated one) left to resume from.
			c := slices.Clone(b)
			c[len(c)-1000] ^= 0x10
			return c
		}, "does not match the manifest"},
		{"wrong board", func(t *testing.T, b []byte) []byte {
			rel := running
			rel.Version, rel.Board, rel.Epoch = "9.9.9-otherboard", "generic-x86_64", running.Epoch+1000
			return resigned(t, rel, devKey(t))
		}, "another board"},
		{"lower security version", func(t *testing.T, b []byte) []byte {
			rel := running
			rel.Version, rel.SecurityVersion, rel.Epoch = "9.9.9-oldsecurity", running.SecurityVersion-1, running.Epoch+1000
			return resigned(t, rel, devKey(t))
		}, "below the device's floor"},
		{"unsigned", func(t *testing.T, b []byte) []byte {
			manifest, _, payload := bundleFrame(t, b)
			return reframe(manifest, nil, payload)
		}, "unsigned"},
		{"signed by an untrusted key", func(t *testing.T, b []byte) []byte {
			k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			rel := running
			rel.Version, rel.Epoch = "9.9.9-untrusted", running.Epoch+1000
			return resigned(t, rel, k)
		}, "does not trust"},
	}
}

func hybridSig(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, sig, _ := bundleFrame(t, b)
	return sig.Sig
}

// publishBytes writes b to a file of the test's and publishes it.
func publishBytes(t *testing.T, l *Lab, b []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bundle.pqb")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Publish(f, bundleName); err != nil {
		t.Fatal(err)
	}
}

// stage publishes rel, asks the box to check, and waits until it is staged.
func stage(ctx context.Context, t *testing.T, l *Lab, rel testRelease) status.UpdateStatus {
	t.Helper()
	if err := l.Publish(rel.Bundle, bundleName); err != nil {
		t.Fatal(err)
	}
	console(ctx, t, l, "update check")
	r := waitUpdate(ctx, t, l, "staging "+rel.Version, 8*time.Minute, func(u status.UpdateStatus) bool {
		return u.State == agent.Staged && u.Target == rel.Version
	})
	return r.Update
}

func describe(u status.UpdateStatus) string {
	last := ""
	if u.Last != nil {
		last = fmt.Sprintf(" last %s %s->%s: %s", u.Last.Result, u.Last.From, u.Last.To, u.Last.Reason)
	}
	return fmt.Sprintf("%s target %s reason %q%s", u.State, u.Target, u.Reason, last)
}

func reasonHas(u status.UpdateStatus, s string) bool {
	return strings.Contains(strings.ToLower(u.Reason), strings.ToLower(s))
}
