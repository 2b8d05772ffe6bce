package syslog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// running is a forwarder whose Run the test stops, pass or fail.
type running struct {
	f       *Forwarder
	log     *slog.Logger // feeds f; its own output goes to console
	console *bytes.Buffer
	stop    func()
}

func start(t *testing.T, opts Options, d Destination) *running {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	}
	f := NewForwarder(opts)
	r := &running{f: f, console: &bytes.Buffer{}}
	r.log = slog.New(f.Handler(slog.NewTextHandler(&lockedWriter{w: r.console}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, d, r.log.With("svc", "syslog")) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func waitState(t *testing.T, f *Forwarder, want ...State) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, w := range want {
			if f.State() == w {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("state %v, want one of %v", f.State(), want)
}

func seqID(t *testing.T, p parsed) string {
	t.Helper()
	for _, e := range p.Data {
		if e.ID == "meta" && len(e.Params) == 1 && e.Params[0].Name == "sequenceId" {
			return e.Params[0].Value
		}
	}
	return ""
}

func TestUDPLoopback(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	src := netip.MustParseAddr("127.0.0.2") // not the kernel's choice for 127.0.0.1
	r := start(t, Options{ProcID: "1"}, Destination{Protocol: UDP, Address: pc.LocalAddr().String(), Facility: Local4, Hostname: "branch-7", Level: slog.LevelInfo, Source: src})

	r.log.With("svc", "tunnel").Info("tunnel established", "ke", "x25519", "addke", "mlkem768")
	r.log.Debug("not forwarded: below the level")
	r.log.Error("disk full", "err", fmt.Errorf("write /data/x: no space"))

	want := []struct {
		sev      Severity
		app, msg string
	}{
		{Info, "tunnel", "tunnel established ke=x25519 addke=mlkem768"},
		{Error, "pqbranch", `disk full err="write /data/x: no space"`},
	}
	buf := make([]byte, 65536)
	for i, w := range want {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if got := from.(*net.UDPAddr).AddrPort().Addr(); got != src {
			t.Errorf("datagram %d from %v, want from %v", i, got, src)
		}
		p, err := parse5424(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if p.Facility != Local4 || p.Severity != w.sev || p.Hostname != "branch-7" || p.AppName != w.app || p.ProcID != "1" || p.Msg != w.msg {
			t.Errorf("datagram %d: %+v, want %v %s %q", i, p.Message, w.sev, w.app, w.msg)
		}
		if got := seqID(t, p); got != fmt.Sprint(i+1) {
			t.Errorf("datagram %d: sequenceId %q, want %d", i, got, i+1)
		}
		if time.Since(p.Time) > time.Minute || p.Time.After(time.Now()) {
			t.Errorf("datagram %d: timestamp %v", i, p.Time)
		}
	}
	if !strings.Contains(r.console.String(), "not forwarded") {
		t.Error("a record below the forwarding level did not reach the console")
	}
	// Sent counts a datagram once the write returned, which may be just
	// after the listener read it.
	for deadline := time.Now().Add(5 * time.Second); r.f.Stats().Sent < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if s := r.f.Stats(); s.Sent != 2 || s.Dropped != 0 || s.Queued != 0 || s.State != Connected {
		t.Errorf("stats %+v", s)
	}
}

// collector is a TCP syslog collector on loopback; stop closes it.
type collector struct {
	t      *testing.T
	ln     net.Listener
	frames chan []byte
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func listenCollector(t *testing.T, addr string) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{t: t, ln: ln, frames: make(chan []byte, 10000)}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				br := bufio.NewReader(conn)
				for {
					f, err := readFrame(br)
					if err != nil {
						return
					}
					c.frames <- f
				}
			}()
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *collector) stop() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
	c.mu.Unlock()
	c.wg.Wait()
}

// next returns the next message, parsed.
func (c *collector) next() parsed {
	c.t.Helper()
	select {
	case f := <-c.frames:
		p, err := parse5424(f)
		if err != nil {
			c.t.Fatal(err)
		}
		return p
	case <-time.After(5 * time.Second):
		c.t.Fatal("no message within 5s")
	}
	return parsed{}
}

func TestTCPLoopback(t *testing.T) {
	c := listenCollector(t, "127.0.0.1:0")
	r := start(t, Options{}, Destination{Protocol: TCP, Address: c.ln.Addr().String(), Facility: Daemon, Hostname: "branch-7", Level: slog.LevelDebug})
	waitState(t, r.f, Connected)
	// A multi-line record and one the size of the TCP limit both arrive
	// whole, each in its own frame.
	r.log.With("svc", "dhcp").WithGroup("lease").Debug("granted", "ip", "198.18.1.100", "host", "a b")
	r.log.Info("two\nlines")
	r.log.Info(strings.Repeat("x", 10000))
	for i, want := range []struct{ app, msg string }{
		{"dhcp", `granted lease.ip=198.18.1.100 lease.host="a b"`},
		{"pqbranch", "two\nlines"},
	} {
		p := c.next()
		if p.AppName != want.app || p.Msg != want.msg || p.Facility != Daemon {
			t.Errorf("message %d: %+v, want %s %q", i, p.Message, want.app, want.msg)
		}
	}
	long := c.next()
	if len(long.Msg) < 8000 || len(long.Msg) > 8192 || strings.Trim(long.Msg, "x") != "" {
		t.Errorf("long message: %d bytes of MSG", len(long.Msg))
	}
}

// The collector goes away: the forwarder notices, queues without blocking
// the logger, reconnects with backoff when the collector is back, and
// delivers what was queued, in order.
func TestTCPReconnect(t *testing.T) {
	c := listenCollector(t, "127.0.0.1:0")
	addr := c.ln.Addr().String()
	r := start(t, Options{}, Destination{Protocol: TCP, Address: addr, Facility: Local0, Hostname: "b", Level: slog.LevelInfo})
	r.log.Info("before")
	if p := c.next(); p.Msg != "before" {
		t.Fatalf("got %q", p.Msg)
	}
	c.stop()
	waitState(t, r.f, Retrying, Connecting)

	start := time.Now()
	for i := range 200 {
		t0 := time.Now()
		r.log.Info("while down", "i", i)
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Fatalf("logging took %v with the collector down", d)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("200 records took %v with the collector down", d)
	}
	time.Sleep(150 * time.Millisecond) // a few dials fail
	// Queued: the forwarder's own warning about the outage, which it
	// logged through the same logger, and the 200.
	if s := r.f.Stats(); s.State == Connected || s.Queued != 201 {
		t.Fatalf("collector down: stats %+v", s)
	}

	c2 := listenCollector(t, addr)
	if p := c2.next(); p.AppName != "syslog" || p.Severity != Warning || !strings.Contains(p.Msg, "collector unreachable") || seqID(t, p) != "2" {
		t.Errorf("outage report: %+v", p.Message)
	}
	for i := range 200 {
		p := c2.next()
		if want := fmt.Sprintf("while down i=%d", i); p.Msg != want {
			t.Fatalf("after reconnect message %d: %q, want %q", i, p.Msg, want)
		}
		if got, want := seqID(t, p), fmt.Sprint(i+3); got != want {
			t.Fatalf("message %d: sequenceId %s, want %s", i, got, want)
		}
	}
	if p := c2.next(); p.AppName != "syslog" || !strings.Contains(p.Msg, "collector reachable again") {
		t.Errorf("recovery report: %+v", p.Message)
	}
	if s := r.f.Stats(); s.Dropped != 0 || s.State != Connected {
		t.Errorf("stats %+v", s)
	}
}

// A flood while nothing is sent keeps only the newest QueueLen records;
// the first message out says how many were dropped.
func TestQueueBoundUnderFlood(t *testing.T) {
	f := NewForwarder(Options{QueueLen: 16})
	log := slog.New(f.Handler(slog.DiscardHandler))
	begin := time.Now()
	for i := range 100000 {
		log.Info("flood", "i", i)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("100000 records took %v", d)
	}
	if s := f.Stats(); s.Queued != 16 || s.Dropped != 100000-16 || s.State != Pending {
		t.Fatalf("stats %+v", s)
	}

	c := listenCollector(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, Destination{Protocol: TCP, Address: c.ln.Addr().String(), Hostname: "b"}, log)
	}()
	defer func() { cancel(); <-done }()

	if p := c.next(); p.AppName != "syslog" || p.Severity != Warning || !strings.HasPrefix(p.Msg, "dropped 99984 log records") || seqID(t, p) != "1" {
		t.Errorf("drop report: %+v", p.Message)
	}
	for i := 100000 - 16; i < 100000; i++ {
		p := c.next()
		seq := i - (100000 - 16) + 2
		if want := fmt.Sprintf("flood i=%d", i); p.Msg != want || seqID(t, p) != fmt.Sprint(seq) {
			t.Fatalf("got %q seq %s, want %q seq %d", p.Msg, seqID(t, p), want, seq)
		}
	}
}

// A collector that accepts but never reads fills the socket buffers: the
// sender blocks in its write, the logger does not, and the queue stays
// bounded. Stopping does not wait out the write timeout.
func TestStalledCollectorNeverBlocksTheLogger(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	r := start(t, Options{QueueLen: 64, DrainTimeout: 200 * time.Millisecond}, Destination{Protocol: TCP, Address: ln.Addr().String(), Hostname: "b"})
	var conn net.Conn
	select {
	case conn = <-accepted:
		defer conn.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
	}
	log := slog.New(r.f.Handler(slog.DiscardHandler)) // no console to fill
	line := strings.Repeat("y", 4000)
	var slowest time.Duration
	begin := time.Now()
	for range 20000 { // 80 MB: far more than the socket buffers hold
		t0 := time.Now()
		log.Info(line)
		slowest = max(slowest, time.Since(t0))
	}
	if d := time.Since(begin); d > 10*time.Second || slowest > 250*time.Millisecond {
		t.Fatalf("logging into a stalled collector took %v, the slowest record %v", d, slowest)
	}
	s := r.f.Stats()
	if s.Queued > 64 || s.Dropped == 0 || s.Sent == 20000 {
		t.Fatalf("stats %+v", s)
	}
	stopped := time.Now()
	r.stop()
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("stop took %v", d)
	}
	// The record stuck in the stalled write is counted as dropped; the
	// queued ones wait for the next Run.
	if after := r.f.Stats(); after.Dropped != s.Dropped+1 || after.Queued != s.Queued || after.State != Pending {
		t.Errorf("after stop: %+v, before %+v", after, s)
	}
}

func TestDisableDiscards(t *testing.T) {
	f := NewForwarder(Options{})
	log := slog.New(f.Handler(slog.DiscardHandler))
	log.Info("queued while pending")
	f.Disable()
	log.Info("discarded")
	if s := f.Stats(); s.Queued != 0 || s.Dropped != 0 || s.State != Off {
		t.Errorf("stats %+v", s)
	}
	if log.Enabled(context.Background(), slog.LevelError) {
		t.Error("an off forwarder over a discarding handler still wants records")
	}
}

func TestRunRejects(t *testing.T) {
	f := NewForwarder(Options{})
	for _, d := range []Destination{
		{Protocol: 0, Address: "192.0.2.1:514"},
		{Protocol: UDP, Address: "192.0.2.1"},
		{Protocol: TCP, Address: "192.0.2.1:514", Facility: 24},
	} {
		if err := f.Run(context.Background(), d, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%+v accepted", d)
		}
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	d := Destination{Protocol: UDP, Address: pc.LocalAddr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, d, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()
	waitState(t, f, Connected)
	if err := f.Run(ctx, d, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
}

// TestStopRacingAWrite: when the context ends just before a write sets its
// deadline (the cut already ran), the write still gets only DrainTimeout
// against a stalled collector, not the whole WriteTimeout.
func TestStopRacingAWrite(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client, collector := net.Pipe() // a collector that never reads
	defer collector.Close()
	c := newConn(ctx, client, TCP, 50*time.Millisecond)
	defer c.close()
	cancel()
	time.Sleep(50 * time.Millisecond) // the cut has run: the sender is past its look at ctx
	f := NewForwarder(Options{WriteTimeout: 5 * time.Second})
	s := &sender{f: f, d: Destination{Protocol: TCP}, log: slog.New(slog.DiscardHandler), conn: c, frame: []byte("1 x")}
	begin := time.Now()
	if err := s.write(begin.Add(f.opts.WriteTimeout)); err == nil {
		t.Fatal("a write to a collector that never reads succeeded")
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("the write took %v after the context ended, want about DrainTimeout (50ms)", d)
	}
}
