package ike

import (
	"context"
	"crypto/rand"
	"syscall"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/ikeresp"
	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floorCPU is the initiator's unavoidable crypto for one hybrid handshake:
// X25519 key generation and agreement, ML-KEM-768 key generation and
// decapsulation (the responder's halves are prepared outside the timing).
func floorCPU(b *testing.B, n int) time.Duration {
	var total time.Duration
	for range n {
		x, _ := kex.NewInitiator(message.KE_X25519, rand.Reader)
		xr, _, _ := kex.Respond(message.KE_X25519, x.Public(), rand.Reader)
		start := cpuTime()
		x2, _ := kex.NewInitiator(message.KE_X25519, rand.Reader)
		if _, err := x2.Complete(xr); err != nil {
			b.Fatal(err)
		}
		m, _ := kex.NewInitiator(message.KE_MLKEM768, rand.Reader)
		total += cpuTime() - start
		ct, _, _ := kex.Respond(message.KE_MLKEM768, m.Public(), rand.Reader)
		start = cpuTime()
		if _, err := m.Complete(ct); err != nil {
			b.Fatal(err)
		}
		total += cpuTime() - start
	}
	return total / time.Duration(n)
}

// BenchmarkHandshake measures a full X25519+ML-KEM-768 PSK handshake against
// the in-process responder. cpu-us/handshake is process CPU and so includes
// the responder's half; floor-us is the initiator's bare crypto.
func BenchmarkHandshake(b *testing.B) {
	r := startResponder(b, ikeresp.Config{AddKE: []uint16{message.KE_MLKEM768}})
	opt, _ := testOptions(b, r)
	cfg := tunnelConfig(r)
	ctx := context.Background()
	b.ReportAllocs()
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := New(cfg, opt)
		if err != nil {
			b.Fatal(err)
		}
		start := cpuTime()
		if err := s.Establish(ctx); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - start
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.StopTimer()
	perOp := cpu / time.Duration(b.N)
	floor := floorCPU(b, 200)
	b.ReportMetric(float64(perOp.Microseconds()), "cpu-us/handshake")
	b.ReportMetric(float64(floor.Microseconds()), "floor-us")
	b.ReportMetric(float64(perOp)/float64(floor), "x-floor")
}
