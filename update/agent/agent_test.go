package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/release"
	"github.com/pqbranch/pqbranch/update/bundle"
	"github.com/pqbranch/pqbranch/update/hybrid"
	"github.com/pqbranch/pqbranch/update/window"
)

const (
	board     = "qemu-x86_64"
	testChunk = 64 << 10 // small chunks keep the in-memory slots small
	slotSize  = 4 << 20
)

// testKey is generated once: ML-DSA key generation is the slow part.
var testKey = sync.OnceValue(func() *hybrid.PrivateKey {
	k, err := hybrid.GenerateKey(hybrid.MLDSA65Ed25519, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

func testKeys() hybrid.Keyring {
	return hybrid.Keyring{Keys: []hybrid.TrustedKey{{PublicKey: testKey().Public(), Name: "test"}}}
}

// payload is n pseudo-random bytes (seeded) with chunks 2 and 3 all zero,
// so zero chunks are exercised, and a short last chunk when n says so.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	clear(b[2*testChunk : min(n, 4*testChunk)])
	return b
}

func rel(version string, sv uint64, epoch int64) release.Release {
	return release.Release{Version: version, Board: board, Profile: release.Dev, Kernel: "6.1.0", SecurityVersion: sv, Epoch: epoch}
}

// makeBundle signs payload as release r.
func makeBundle(t testing.TB, r release.Release, p []byte) ([]byte, release.Release) {
	t.Helper()
	var buf bytes.Buffer
	m, err := bundle.WriteChunkSize(&buf, r, bytes.NewReader(p), int64(len(p)), testChunk, testKey())
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m.Release
}

// bundleServer serves one bundle over TLS and records each request.
type bundleServer struct {
	*httptest.Server
	mu     sync.Mutex
	bundle []byte
	ranges []string      // Range header of each request, "" for none
	curves []tls.CurveID // negotiated key exchange of each request
	// abortAfter, when set, makes the next request from byte 0 stop after
	// that many bytes, as a dropped link does.
	abortAfter int
	// hold, when set, blocks a request from byte 0 after holdAfter bytes until it is closed.
	hold      chan struct{}
	holdAfter int
}

func newBundleServer(t testing.TB, b []byte) *bundleServer {
	s := &bundleServer{bundle: b}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.curves = append(s.curves, r.TLS.CurveID)
	b, abort, hold, holdAfter := s.bundle, s.abortAfter, s.hold, s.holdAfter
	if r.Header.Get("Range") == "" {
		s.abortAfter = 0
	}
	s.mu.Unlock()
	if r.Header.Get("Range") == "" && abort > 0 {
		w.Header().Set("Content-Length", "1000000000")
		w.Write(b[:abort])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	if r.Header.Get("Range") == "" && hold != nil {
		w.Header().Set("Content-Length", "1000000000")
		w.Write(b[:holdAfter])
		w.(http.Flusher).Flush()
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		return
	}
	http.ServeContent(w, r, "update.pqb", time.Time{}, bytes.NewReader(b))
}

func (s *bundleServer) set(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle = b
}

func (s *bundleServer) requests() ([]string, []tls.CurveID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...), append([]tls.CurveID(nil), s.curves...)
}

func (s *bundleServer) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// rig is one device: its data dir, boot variables, slots and clock, which
// survive "reboots" (agents started one after the other).
type rig struct {
	t       *testing.T
	dir     string
	boot    *memBoot
	disk    *memDisk
	clk     *fakeClock
	mu      sync.Mutex
	reboots []string
	healthy bool
	why     string
	inSlot  map[string]release.Release // what each slot runs
}

var v1 = func() release.Release {
	r := rel("0.1.0", 1, 1000)
	r.BuildID = strings.Repeat("1", 64)
	return r
}()

func newRig(t *testing.T) *rig {
	return &rig{
		t: t, dir: t.TempDir(), boot: newMemBoot(), disk: newMemDisk(slotSize),
		clk:     newFakeClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)),
		healthy: true,
		inSlot:  map[string]release.Release{"A": v1},
	}
}

func (r *rig) rebootCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reboots)
}

func (r *rig) lastReboot() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reboots) == 0 {
		return ""
	}
	return r.reboots[len(r.reboots)-1]
}

func (r *rig) setHealth(ok bool, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.healthy, r.why = ok, why
}

func (r *rig) options(slot string) Options {
	return Options{
		DataDir: r.dir, Running: r.inSlot[slot], Slot: slot,
		Disk: r.disk, Boot: r.boot, Keys: testKeys(), DeviceID: "branch-7",
		Health: func() (bool, string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.healthy, r.why
		},
		Reboot: func(reason string) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.reboots = append(r.reboots, reason)
			return nil
		},
		TrialTimeout: 10 * time.Minute, HealthInterval: time.Minute, CheckInterval: time.Hour,
		Now: r.clk.Now, After: r.clk.After,
	}
}

// run starts an agent in slot with opts applied; stop ends it, as a power
// cut or reboot ends the process.
func (r *rig) run(slot string, opts ...func(*Options)) (a *Agent, stop func()) {
	r.t.Helper()
	o := r.options(slot)
	for _, f := range opts {
		f(&o)
	}
	a, err := New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				r.t.Errorf("Run: %v", err)
			}
		})
	}
	r.t.Cleanup(stop)
	return a, stop
}

// bootNext is the firmware at a reset: it picks BootNext once, else BootOrder[0].
func (r *rig) bootNext() string { return r.boot.boot() }

func (r *rig) state() persisted {
	r.t.Helper()
	p, err := loadState(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func withURL(s *bundleServer) func(*Options) {
	return func(o *Options) { o.URL, o.CA = s.URL, s.pool() }
}

func withWindow(w window.Window) func(*Options) {
	return func(o *Options) { o.Window = w }
}

func waitState(t testing.TB, a *Agent, want State) Status {
	t.Helper()
	var st Status
	defer func() {
		if t.Failed() {
			t.Logf("last status: %+v", st)
		}
	}()
	waitFor(t, "state "+want.String(), func() bool {
		st = a.Status()
		if st.State == Failed && want != Failed {
			t.Fatalf("state failed: %s", st.Reason)
		}
		return st.State == want
	})
	return st
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestUpdateCycle: download over TLS, verify, stage, wait for the window,
// trial boot, healthy, commit.
func TestUpdateCycle(t *testing.T) {
	r := newRig(t)
	p := payload(2, 40*testChunk)
	b, v2 := makeBundle(t, rel("0.2.0", 3, 2000), p)
	srv := newBundleServer(t, b)
	win := window.Window{Start: 2 * time.Hour, Duration: 2 * time.Hour}
	// Old bits in slot B: zero chunks must be written as zeros, not skipped.
	for i := range r.disk.slots["B"] {
		r.disk.slots["B"][i] = 0xaa
	}

	a, stop := r.run("A", withURL(srv), withWindow(win))
	st := waitState(t, a, Staged)
	if got := r.disk.bytes("B", len(p)); !bytes.Equal(got, p) {
		t.Fatal("slot B does not hold the payload after staging")
	}
	if got := r.disk.bytes("A", len(p)); !bytes.Equal(got, make([]byte, len(p))) {
		t.Fatal("the running slot A was written")
	}
	if st.Target != "0.2.0" || st.Bytes != int64(len(p)) || st.Total != int64(len(p)) || st.Percent != 100 {
		t.Errorf("staged status: target %q bytes %d total %d percent %v", st.Target, st.Bytes, st.Total, st.Percent)
	}
	// The window opens at 02:00 tomorrow; the reboot must leave 5 minutes.
	open := time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)
	if st.WaitUntil.Before(open) || st.WaitUntil.After(open.Add(2*time.Hour-DefaultRebootBudget)) {
		t.Fatalf("wait_until %v: expected inside tomorrow's 02:00-04:00 window minus the reboot budget", st.WaitUntil)
	}
	if n := r.boot.count("SetNext"); n != 0 || r.rebootCount() != 0 {
		t.Fatalf("before the window: %d SetNext, %d reboots; expected none", n, r.rebootCount())
	}
	if !strings.Contains(st.Channel, "X25519MLKEM768") {
		t.Errorf("channel %q: expected X25519MLKEM768", st.Channel)
	}

	waitFor(t, "the window timer", func() bool { return r.clk.pending() > 1 })
	r.clk.Set(st.WaitUntil)
	waitState(t, a, Rebooting)
	if r.lastReboot() != "update to 0.2.0" {
		t.Fatalf("reboot reason %q", r.lastReboot())
	}
	tr := r.state().Trial
	if tr == nil || !tr.Armed || tr.Slot != "B" || tr.BuildID != v2.BuildID || tr.Boots != 1 {
		t.Fatalf("trial record before reboot: %+v", tr)
	}
	stop()

	// The firmware boots B once.
	if s := r.bootNext(); s != "B" {
		t.Fatalf("firmware booted %s; expected the trial slot B", s)
	}
	r.inSlot["B"] = v2
	r.clk.Add(time.Minute)
	b2, _ := r.run("B", withURL(srv), withWindow(win))
	st = waitState(t, b2, Committed)
	if r.boot.count("Commit B") != 1 {
		t.Fatalf("boot calls %v: expected one Commit B", r.boot.calls)
	}
	ps := r.state()
	if ps.SecurityFloor != 3 || ps.Trial != nil || ps.Download != nil {
		t.Fatalf("after commit: floor %d trial %+v download %+v", ps.SecurityFloor, ps.Trial, ps.Download)
	}
	if st.Last == nil || st.Last.Result != OutcomeCommitted || st.Last.From != "0.1.0" || st.Last.To != "0.2.0" {
		t.Fatalf("last result %+v", st.Last)
	}
	if st.SecurityFloor != 3 {
		t.Errorf("status security floor %d; expected 3", st.SecurityFloor)
	}
	if s := r.bootNext(); s != "B" {
		t.Fatalf("after commit the firmware boots %s; expected B", s)
	}
	// Every start repairs the boot entries.
	if n := r.boot.count("Ensure"); n < 2 {
		t.Errorf("Ensure called %d times; expected at every start", n)
	}
}

// TestTLSGroup: the update channel negotiates TLS 1.3 with X25519MLKEM768
// and checks the server against the configured CA pool.
func TestTLSGroup(t *testing.T) {
	b, _ := makeBundle(t, rel("0.2.0", 3, 2000), payload(3, 5*testChunk))
	srv := newBundleServer(t, b)

	s, err := newHTTPSource(srv.URL, srv.pool())
	if err != nil {
		t.Fatal(err)
	}
	body, err := s.open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	_, curves := srv.requests()
	if len(curves) != 1 || curves[0] != tls.X25519MLKEM768 {
		t.Fatalf("server saw key exchange %v; expected X25519MLKEM768", curves)
	}
	if want := "TLS 1.3 X25519MLKEM768"; s.channel() != want {
		t.Errorf("channel %q; expected %q", s.channel(), want)
	}

	// A server whose certificate the pool does not hold is refused.
	s2, err := newHTTPSource(srv.URL, otherCA(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.open(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("open with the wrong CA: %v; expected a certificate error", err)
	}
	if _, err := newHTTPSource("http://example.com/u.pqb", nil); err == nil {
		t.Error("a plain http URL was accepted")
	}
}

// otherCA is a pool holding a fresh self-signed CA that signed nothing.
func otherCA(t *testing.T) *x509.CertPool {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p
}
