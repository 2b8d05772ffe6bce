package ike

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/edge"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: fixed at
// 100 on Linux whatever the kernel's HZ.
const clockTicks = 100

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm may hold spaces; the fields after its closing parenthesis start
	// with state (field 3), so utime and stime (14, 15) are at 11 and 12.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// sswanRounds is how many handshakes strongSwan runs: swanctl makes each
// take ~20 ms of wall time, and at 10 ms per clock tick 150 of them resolve
// its CPU to a few percent.
const sswanRounds = 150

// BenchmarkInteropHandshakeCPU sets our initiator and strongSwan 6.1's own
// initiator against the same strongSwan responder in the same run, each
// doing X25519+ML-KEM-768 with PSK: IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH
// with a Child SA, then deleting the IKE SA. It reports the CPU each
// initiator spends per handshake and their ratio.
//
// Ours is the test process's CPU (getrusage), with SAs recorded in memory.
// strongSwan's is its charon's utime+stime; that includes installing the
// Child SA through kernel-libipsec and netlink and serving the two vici
// requests (initiate, terminate) that drive it, which sswan-vici-us/op
// estimates by timing a no-op vici request.
func BenchmarkInteropHandshakeCPU(b *testing.B) {
	needEdge(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const psk = "interop-bench-psk-0123456789"
	quiet := map[string]int{"default": 0, "ike": 0, "cfg": 0}
	env := startInterop(b, ctx, envConfig{}, edge.Options{
		Name: "dc", LocalID: "edge.example", Auth: edge.Auth{PSK: psk},
		Children: interopChild("aes256gcm16"), LogLevels: quiet,
	})
	// strongSwan's initiator shares the branch namespace and address with
	// ours; it owns ports 500/4500 there, ours uses ephemeral ones.
	cache, err := edge.NewCache(os.Stderr)
	if err != nil {
		b.Fatal(err)
	}
	sswan, err := edge.Start(ctx, edge.Options{
		NS: env.branch, Cache: cache, Name: "bench",
		LocalAddrs: interopBranchWAN, RemoteAddrs: edge.EdgeWANAddr,
		LocalID: "branch1.example", RemoteID: "edge.example", Auth: edge.Auth{PSK: psk},
		Children:  []edge.Child{{LocalTS: []string{interopBranchLAN}, RemoteTS: []string{edge.DCNet}}},
		LogLevels: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := sswan.Stop(); err != nil {
			b.Errorf("stopping strongSwan initiator: %v", err)
		}
	}()

	cfg := interopConfig()
	cfg.Auth, cfg.PSK = "psk", NewSecret(psk)
	opt := Options{Installer: env.mem, Logger: slog.New(slog.DiscardHandler), RetransmitBase: 500 * time.Millisecond}
	var ours time.Duration
	b.ResetTimer()
	// One trip into the namespace for the whole loop: its sockets are all
	// opened on this thread.
	err = env.do(b, func() error {
		start := cpuTime()
		for i := 0; i < b.N; i++ {
			s, err := New(cfg, opt)
			if err != nil {
				return err
			}
			if err := s.Establish(ctx); err != nil {
				return fmt.Errorf("handshake %d: %w", i, err)
			}
			if err := s.Close(); err != nil {
				return fmt.Errorf("close %d: %w", i, err)
			}
		}
		ours = cpuTime() - start
		return nil
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if n := len(env.mem.SAs()); n != 0 {
		b.Fatalf("%d SAs left installed after closing every session", n)
	}

	theirs, vici := sswanCPU(b, ctx, sswan)
	perOurs := ours / time.Duration(b.N)
	b.ReportMetric(float64(perOurs.Microseconds()), "go-cpu-us/handshake")
	b.ReportMetric(float64(theirs.Microseconds()), "sswan-cpu-us/handshake")
	b.ReportMetric(float64(vici.Microseconds()), "sswan-vici-us/op")
	b.ReportMetric(float64(perOurs)/float64(theirs), "go/sswan")
}

// sswanCPU returns charon's CPU per initiate+terminate cycle, and per no-op
// vici request as a yardstick for the part that is swanctl plumbing.
func sswanCPU(b *testing.B, ctx context.Context, e *edge.Edge) (perHandshake, perVici time.Duration) {
	b.Helper()
	pid := e.PID()
	cpu := func() time.Duration {
		d, err := procCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	// One untimed round: the first handshake loads keys and warms caches.
	cycle := func(i int) {
		if err := e.Initiate(ctx, "net"); err != nil {
			b.Fatalf("strongSwan handshake %d: %v", i, err)
		}
		if err := e.Terminate(ctx); err != nil {
			b.Fatalf("strongSwan delete %d: %v", i, err)
		}
	}
	cycle(-1)
	start := cpu()
	for i := range sswanRounds {
		cycle(i)
	}
	perHandshake = (cpu() - start) / sswanRounds
	start = cpu()
	for range sswanRounds {
		if _, err := e.Swanctl(ctx, "--stats"); err != nil {
			b.Fatal(err)
		}
	}
	perVici = (cpu() - start) / sswanRounds
	if sas, err := e.ListSAs(ctx); err != nil || strings.Contains(sas, "ESTABLISHED") {
		b.Fatalf("strongSwan initiator kept SAs (%v):\n%s", err, sas)
	}
	return perHandshake, perVici
}
