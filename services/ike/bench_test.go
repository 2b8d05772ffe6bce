package ike

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/bindtest"
	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
	"golang.org/x/sys/unix"
)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchResponderEnv, set in a child of the test binary, makes TestMain run
// an ikeresp responder instead of the tests: see startResponderProcess.
const benchResponderEnv = "PQB_IKE_BENCH_RESPONDER"

func TestMain(m *testing.M) {
	if os.Getenv(benchResponderEnv) != "" {
		os.Exit(serveResponderProcess())
	}
	os.Exit(m.Run())
}

// serveResponderProcess is the child's side: a PSK responder with
// ML-KEM-768 on loopback and an echo port for udpFloorCPU, whose ports go
// to stdout as "IKE-port NAT-port echo-port". It serves until stdin
// closes, which happens when the parent closes it or dies, so no child
// outlives its benchmark.
func serveResponderProcess() int {
	r, err := ikeresp.New(ikeresp.Config{ID: "edge.example", PSK: []byte(testPSK), AddKE: []uint16{message.KE_MLKEM768}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench responder:", err)
		return 1
	}
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench echo:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel(); echo.Close() }()
	go serveEcho(echo)
	fmt.Printf("%d %d %d\n", r.Addr().Port(), r.NATPort(), echo.LocalAddr().(*net.UDPAddr).Port)
	r.Serve(ctx)
	return 0
}

// serveEcho answers each datagram with one as long as its first two bytes
// say, until c is closed.
func serveEcho(c *net.UDPConn) {
	buf, answer := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < 2 {
			continue
		}
		c.WriteToUDPAddrPort(answer[:binary.BigEndian.Uint16(buf)], from)
	}
}

// startResponderProcess runs the responder in a child process, so that
// the benchmark's process CPU is the initiator's alone. It returns the
// responder's IKE address and NAT-T port, and the echo port's address.
func startResponderProcess(b *testing.B) (ike netip.AddrPort, natPort uint16, echo netip.AddrPort) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchResponderEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the responder process: %v", err)
	}
	b.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("responder process: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		b.Fatalf("responder process printed %q (%v), want \"IKE-port NAT-port echo-port\"", line, err)
	}
	var ports [3]uint16
	for i := range ports {
		p, err := strconv.ParseUint(f[i], 10, 16)
		if err != nil {
			b.Fatalf("responder process printed %q, want three ports", line)
		}
		ports[i] = uint16(p)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	return netip.AddrPortFrom(lo, ports[0]), ports[1], netip.AddrPortFrom(lo, ports[2])
}

// Sizes of the messages the floor's PRF calls cover, about those of the
// benchmark's handshake: RealMessage1 and 2 of IKE_SA_INIT, and the
// IKE_INTERMEDIATE plaintexts, mostly the ML-KEM-768 public key and
// ciphertext. A hundred bytes more or less is a fraction of a microsecond.
const (
	floorInitLen       = 400
	floorIntermediateI = 1184 + 8
	floorIntermediateR = 1088 + 8
)

// floorCPU is the crypto an initiator cannot avoid in one X25519 +
// ML-KEM-768 PSK handshake with prf: X25519 key generation and agreement,
// ML-KEM-768 key generation and decapsulation, SKEYSEED and prf+ for the
// SK_* keys after IKE_SA_INIT and again after IKE_INTERMEDIATE, the two
// IntAuth links, the AUTH we send and the one we check, and the Child SA's
// KEYMAT, all with the package's own key schedule. The responder's halves
// are prepared outside the timing. Left out as too small to matter: AES-GCM
// of the few kilobytes of SK payloads, and the NAT detection hashes.
func floorCPU(b *testing.B, prf keys.PRF) time.Duration {
	b.Helper()
	ni, nr := make([]byte, nonceLen), make([]byte, nonceLen)
	rand.Read(ni)
	rand.Read(nr)
	init1, init2 := make([]byte, floorInitLen), make([]byte, floorInitLen)
	intI, intR := make([]byte, floorIntermediateI), make([]byte, floorIntermediateR)
	psk, id := []byte(testPSK), []byte("\x02\x00\x00\x00branch1.example")
	l := keys.Lengths{Enc: 32 + 4}
	var total time.Duration
	x, _ := kex.NewInitiator(message.KE_X25519, rand.Reader)
	xr, _, _ := kex.Respond(message.KE_X25519, x.Public(), rand.Reader)
	start := cpuTime()
	x2, _ := kex.NewInitiator(message.KE_X25519, rand.Reader)
	sx, err := x2.Complete(xr)
	if err != nil {
		b.Fatal(err)
	}
	k := keys.Derive(prf, keys.SKEYSEED(prf, ni, nr, sx), ni, nr, 1, 2, l)
	m, _ := kex.NewInitiator(message.KE_MLKEM768, rand.Reader)
	total += cpuTime() - start
	ct, _, _ := kex.Respond(message.KE_MLKEM768, m.Public(), rand.Reader)
	start = cpuTime()
	sm, err := m.Complete(ct)
	if err != nil {
		b.Fatal(err)
	}
	ai := keys.IntAuth(prf, k.Pi, nil, intI)
	ar := keys.IntAuth(prf, k.Pr, nil, intR)
	k = keys.Derive(prf, keys.SKEYSEEDNext(prf, k.D, sm, ni, nr), ni, nr, 1, 2, l)
	suffix := keys.IntAuthSuffix(ai, ar, 2)
	keys.PSKAuth(prf, psk, keys.SignedOctets(prf, init1, nr, k.Pi, id, suffix))
	keys.PSKAuth(prf, psk, keys.SignedOctets(prf, init2, ni, k.Pr, id, suffix))
	keys.ChildKeymat(prf, k.D, nil, ni, nr, 2*l.Enc)
	total += cpuTime() - start
	return total
}

// udpFloorCPU is the kernel's and Go's poller's part that no initiator
// over UDP avoids, to add to floorCPU: one socket connected to the edge,
// and as many datagrams as s sent, of the same mean size, each answered
// by one of the mean size s received, read through Go's poller as any Go
// initiator reads them. The answers come from the echo port of the
// responder's process, so that only this side's CPU is counted. ok is
// false when there is no like-for-like floor for s: it retransmitted, or
// an echo was lost on the way.
func udpFloorCPU(b *testing.B, echo netip.AddrPort, s *Session) (d time.Duration, ok bool) {
	b.Helper()
	n, sent, recvd := int(s.tr.sent), int(s.tr.bytesSent), int(s.tr.bytesRecvd)
	if n == 0 || int(s.tr.recvd) != n {
		return 0, false
	}
	req, answer := make([]byte, max(sent/n, 2)), make([]byte, recvd/n+1)
	binary.BigEndian.PutUint16(req, uint16(recvd/n))
	start := cpuTime()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(echo))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	for range n {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if got, err := c.Read(answer); errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, false
		} else if err != nil || got != recvd/n {
			b.Fatalf("echo answered %d bytes (%v), want %d", got, err, recvd/n)
		}
	}
	return cpuTime() - start, true
}

// threadCPU is the CPU time of the calling thread. It runs on the
// session's goroutine, where a benchmark cannot fail: a clock Linux does
// not have is a panic.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(fmt.Sprintf("thread CPU clock: %v", err))
	}
	return time.Duration(ts.Nano())
}

// memoryEdge answers a session over an in-memory link with an ikeresp
// responder, as a remote edge would, and counts the CPU the responder
// spends on each datagram. It handles each datagram inside the session's
// send (bindtest's SetHandler): a datagram sent to a real edge wakes
// nothing in our process, while a responder in a goroutine of its own
// would be woken by every send. The goroutine stays on its thread while
// the responder handles one, so that thread's CPU clock is the
// responder's. A GC assist the responder's allocations trigger in that
// time is taken out with it. The answer is queued before
// the session waits for it, so the session never sleeps: the cost of
// sleeping in Go's poller and being woken, which a real edge's answer
// brings, is in BenchmarkHandshakeUDP, not here.
type memoryEdge struct {
	bind *bindtest.Bind
	cpu  atomic.Int64 // nanoseconds, added once each datagram is handled
}

func startMemoryEdge(rc ikeresp.Config) *memoryEdge {
	bind, peer := bindtest.New(bindtest.DefaultAddrs)
	r := ikeresp.NewMemory(rc, peer)
	e := &memoryEdge{bind: bind}
	peer.SetHandler(func(d bindtest.Datagram) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU()
		r.Receive(d)
		e.cpu.Add(int64(threadCPU() - start))
	})
	return e
}

// BenchmarkHandshake measures a full X25519+ML-KEM-768 PSK handshake
// (IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH with a Child SA) against the
// in-process responder over the in-memory Bind. cpu-us/handshake is the
// process's CPU during Establish less the responder's own handling of
// each datagram: the initiator's state machine, crypto, the runtime and
// garbage collection (also of the responder's garbage); not the kernel's
// sockets and the session's sleep until each answer comes, which
// BenchmarkHandshakeUDP adds. floor-us is the initiator's bare crypto
// (floorCPU), measured after each handshake, so that both see the same
// load on the machine.
func BenchmarkHandshake(b *testing.B) {
	rc := ikeresp.Config{ID: "edge.example", PSK: []byte(testPSK), AddKE: []uint16{message.KE_MLKEM768}}
	cfg := tunnelConfigTo(bindtest.DefaultAddrs.Remote)
	measureHandshakes(b, nil, func() (*Session, func() time.Duration) {
		edge := startMemoryEdge(rc)
		opt := benchOptions(bindtest.DefaultAddrs.RemoteNAT.Port())
		opt.NewBind = func(context.Context, BindConfig) (Bind, error) { return edge.bind, nil }
		s, err := New(cfg, opt)
		if err != nil {
			b.Fatal(err)
		}
		return s, func() time.Duration { return time.Duration(edge.cpu.Load()) }
	})
}

// BenchmarkHandshakeUDP is BenchmarkHandshake over the appliance's
// transport, two UDP sockets and an epoll instance per attempt (DialUDP),
// towards the responder in another process on loopback; this process's
// CPU is the initiator's alone, including its sleeps in Go's poller until
// each answer comes. On loopback each datagram we send also runs the
// receiving half of the kernel's UDP path, as the edge's datagrams run
// ours in its process.
func BenchmarkHandshakeUDP(b *testing.B) {
	addr, natPort, echo := startResponderProcess(b)
	cfg := tunnelConfigTo(addr)
	opt := benchOptions(natPort)
	udpFloor := func(s *Session) (time.Duration, bool) { return udpFloorCPU(b, echo, s) }
	measureHandshakes(b, udpFloor, func() (*Session, func() time.Duration) {
		s, err := New(cfg, opt)
		if err != nil {
			b.Fatal(err)
		}
		return s, func() time.Duration { return 0 }
	})
}

// measureHandshakes runs b.N handshakes and reports their CPU next to the
// floor's, measured after each. open prepares a session; it also returns
// the CPU that something else in this process (an in-memory edge) has
// spent since, to be taken out. transportFloor, if not nil, is the
// transport's floor for an established session, reported next to the
// crypto's as its mean over the handshakes it was measured for.
func measureHandshakes(b *testing.B, transportFloor func(*Session) (time.Duration, bool), open func() (s *Session, others func() time.Duration)) {
	var cpu, floor, trFloor time.Duration
	trFloors := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, others := open()
		b.StartTimer()
		start := cpuTime()
		if err := s.Establish(context.Background()); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - start - others()
		b.StopTimer()
		if transportFloor != nil {
			if d, ok := transportFloor(s); ok {
				trFloor += d
				trFloors++
			}
		}
		floor += floorCPU(b, checkBenchSession(b, s))
		b.StartTimer()
	}
	b.StopTimer()
	if transportFloor != nil {
		// Handshakes that retransmitted have no like-for-like floor;
		// on loopback they are rare, and none at all is a failure.
		if trFloors == 0 {
			b.Fatalf("no UDP floor measured: every one of %d handshakes retransmitted or lost an echo", b.N)
		}
		trFloor = trFloor * time.Duration(b.N) / time.Duration(trFloors)
	}
	reportVsFloor(b, cpu, floor, trFloor)
}

// benchOptions are the appliance's, logging discarded and SAs in memory.
func benchOptions(remoteNATPort uint16) Options {
	return Options{Installer: xfrm.NewMemory(), Logger: slog.New(slog.DiscardHandler), RemoteNATPort: remoteNATPort}
}

// checkBenchSession checks that s negotiated the hybrid suite the floor
// assumes, closes it and returns its PRF.
func checkBenchSession(b *testing.B, s *Session) keys.PRF {
	b.Helper()
	st := s.Status()
	if st.State != StateEstablished.String() || st.KE != "x25519" || len(st.AddKE) != 1 || st.AddKE[0] != "mlkem768" || len(st.Children) != 1 {
		b.Fatalf("session %s with %s + %v and %d Child SAs, want established with x25519 + mlkem768 and one", st.State, st.KE, st.AddKE, len(st.Children))
	}
	prf := s.ike.suite.prf
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return prf
}

// reportVsFloor reports the CPU per handshake, the crypto floor's and
// their ratio from totals over b.N of each; with a transport floor, also
// that floor and the ratio to both floors together.
func reportVsFloor(b *testing.B, cpu, floor, trFloor time.Duration) {
	n := time.Duration(b.N)
	perOp, floor, trFloor := cpu/n, floor/n, trFloor/n
	b.ReportMetric(float64(perOp.Microseconds()), "cpu-us/handshake")
	b.ReportMetric(float64(floor.Microseconds()), "floor-us")
	b.ReportMetric(float64(perOp)/float64(floor), "x-floor")
	if trFloor > 0 {
		b.ReportMetric(float64(trFloor.Microseconds()), "udp-floor-us")
		b.ReportMetric(float64(perOp)/float64(floor+trFloor), "x-floor+udp")
	}
}
