package syslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// State is what the forwarder is doing.
type State uint32

const (
	// Pending: no destination yet. Records are queued for the first one, so
	// the collector sees the boot.
	Pending State = iota
	// Off: remote syslog is not configured; records are discarded.
	Off
	// Connecting: dialling the collector.
	Connecting
	// Connected: sending.
	Connected
	// Retrying: the collector was unreachable; waiting before the next dial.
	Retrying
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Off:
		return "off"
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Retrying:
		return "retrying"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Destination is where and how Run sends.
type Destination struct {
	Protocol Protocol
	Address  string // "host:port"; a name is resolved at each dial
	Facility Facility
	Hostname string     // HOSTNAME of every message
	Level    slog.Level // records below it are not forwarded
	// Source is the local address to send from; zero: the kernel's
	// choice. A collector behind the tunnel needs the LAN address the
	// tunnel's policy covers, or the firewall drops the clear packets.
	Source netip.Addr
}

func (d Destination) validate() error {
	if d.Protocol != UDP && d.Protocol != TCP {
		return fmt.Errorf("syslog: destination protocol is %v, expected udp or tcp", d.Protocol)
	}
	if _, _, err := net.SplitHostPort(d.Address); err != nil {
		return fmt.Errorf("syslog: destination address %q, expected host:port: %w", d.Address, err)
	}
	if d.Facility > Local7 {
		return fmt.Errorf("syslog: destination facility %d, expected 0..23", d.Facility)
	}
	return nil
}

// Options tune a Forwarder. Zero values take the defaults.
type Options struct {
	QueueLen int    // records held while the collector is slow or down, default 1000
	AppName  string // APP-NAME of records without AppKey, default "pqbranch"
	// AppKey is the attribute that names the service a record comes from;
	// its value becomes the APP-NAME. Default "svc".
	AppKey string
	ProcID string // default the process id

	MinBackoff   time.Duration // first wait after a failure, default 250ms
	MaxBackoff   time.Duration // default 30s
	WriteTimeout time.Duration // a stalled TCP collector is dropped after it, default 10s
	// DrainTimeout bounds how long Run keeps sending the queue after its
	// context ends, so that the last lines before a reboot get out.
	DrainTimeout time.Duration // default 1s
}

func (o *Options) defaults() {
	if o.QueueLen <= 0 {
		o.QueueLen = 1000
	}
	if o.AppName == "" {
		o.AppName = "pqbranch"
	}
	if o.AppKey == "" {
		o.AppKey = "svc"
	}
	if o.ProcID == "" {
		o.ProcID = strconv.Itoa(os.Getpid())
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinBackoff, 250*time.Millisecond)
	def(&o.MaxBackoff, 30*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.DrainTimeout, time.Second)
}

// Stats are the forwarder's counters.
type Stats struct {
	State   State
	Sent    uint64 // messages written to the collector
	Dropped uint64 // records lost because the queue was full
	Queued  int
}

// entry is a queued record, formatted but for the header, which depends on
// the destination.
type entry struct {
	time  time.Time
	level slog.Level
	app   string
	text  string
}

// reportApp is the APP-NAME of the forwarder's reports of dropped records.
const reportApp = "syslog"

// maxText bounds a queued record's text, so the queue's memory is bounded
// by QueueLen * maxText whatever is logged.
const maxText = 8192

// Forwarder queues log records and sends them to a collector.
type Forwarder struct {
	opts    Options
	level   atomic.Int64  // slog.Level below which records are not queued
	state   atomic.Uint32 // State
	running atomic.Bool
	seq     atomic.Uint32 // the last meta sequenceId sent
	sent    atomic.Uint64
	wake    chan struct{} // a record was queued

	mu         sync.Mutex
	queue      ring
	dropped    uint64
	unreported uint64 // dropped since the last report to the collector
}

// NewForwarder returns a forwarder in state Pending.
func NewForwarder(opts Options) *Forwarder {
	opts.defaults()
	f := &Forwarder{opts: opts, queue: ring{buf: make([]entry, opts.QueueLen)}, wake: make(chan struct{}, 1)}
	// Until the first Run names its level, everything is queued; Run
	// leaves out what is below its level when it sends.
	f.level.Store(int64(slog.LevelDebug))
	return f
}

// State returns what the forwarder is doing.
func (f *Forwarder) State() State { return State(f.state.Load()) }

func (f *Forwarder) setState(s State) { f.state.Store(uint32(s)) }

// Stats returns the counters.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{State: f.State(), Sent: f.sent.Load(), Dropped: f.dropped, Queued: f.queue.n}
}

// Disable discards the queue and every record from now until the next Run:
// remote syslog is not configured.
func (f *Forwarder) Disable() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setState(Off)
	f.queue.clear()
	f.unreported = 0
}

func (f *Forwarder) enabled(l slog.Level) bool {
	return f.State() != Off && int64(l) >= f.level.Load()
}

// enqueue adds e without waiting: when the queue is full the oldest record
// makes room and is counted as dropped.
func (f *Forwarder) enqueue(e entry) {
	f.mu.Lock()
	if f.State() == Off {
		f.mu.Unlock()
		return
	}
	if f.queue.push(e) {
		f.dropped++
		f.unreported++
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default: // the sender has a wake-up pending
	}
}

// next returns the record to send next: a report of dropped records first,
// if there were any since the last one.
func (f *Forwarder) next() (entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.unreported; n > 0 {
		f.unreported = 0
		return entry{time: time.Now(), level: slog.LevelWarn, app: reportApp,
			text: fmt.Sprintf("dropped %d log records: the queue of %d was full (%d dropped since start)", n, len(f.queue.buf), f.dropped)}, true
	}
	return f.queue.pop()
}

// Run sends queued records to d until ctx ends, reconnecting with backoff
// whenever the collector is unreachable; then it keeps sending what is
// queued for at most Options.DrainTimeout. It returns an error only for an
// invalid destination or a second concurrent Run. Records keep being
// queued after it returns, for the next Run. log receives the forwarder's
// own state changes (it may well be the logger that feeds the forwarder).
func (f *Forwarder) Run(ctx context.Context, d Destination, log *slog.Logger) error {
	if err := d.validate(); err != nil {
		return err
	}
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("syslog: the forwarder is already running")
	}
	defer f.running.Store(false)
	f.level.Store(int64(d.Level))
	f.setState(Connecting)
	s := &sender{f: f, d: d, log: log, backoff: f.opts.MinBackoff}
	s.run(ctx)
	s.drain()
	if s.conn != nil {
		s.conn.close()
	}
	if s.frame != nil { // framed for this destination: lost, and said so
		f.mu.Lock()
		f.dropped++
		f.unreported++
		f.mu.Unlock()
	}
	f.setState(Pending)
	return nil
}

// sender is one Run's connection and the record in flight.
type sender struct {
	f       *Forwarder
	d       Destination
	log     *slog.Logger
	conn    *conn
	frame   []byte // in flight: written again after a reconnect
	buf     []byte
	backoff time.Duration
	failing bool // since the last successful write; state changes are logged once per outage
}

func (s *sender) run(ctx context.Context) {
	for ctx.Err() == nil {
		if s.conn == nil {
			if !s.connect(ctx) {
				continue
			}
		}
		if !s.take() {
			select {
			case <-ctx.Done():
			case <-s.f.wake:
			case <-s.conn.dead:
				s.fail(ctx, errors.New("the collector closed the connection"))
			}
			continue
		}
		if err := s.write(time.Now().Add(s.f.opts.WriteTimeout)); err != nil {
			s.fail(ctx, err)
		}
	}
}

// connect dials the collector; false: it failed and the backoff was waited.
func (s *sender) connect(ctx context.Context) bool {
	s.f.setState(Connecting)
	c, err := s.d.dial(ctx)
	if err != nil {
		s.fail(ctx, err)
		return false
	}
	s.conn = newConn(ctx, c, s.d.Protocol, s.f.opts.DrainTimeout)
	s.f.setState(Connected)
	return true
}

// write sends the frame in flight, which stays in flight if that fails.
func (s *sender) write(deadline time.Time) error {
	select {
	case <-s.conn.dead:
		return errors.New("the collector closed the connection")
	default:
	}
	if err := s.conn.setWriteDeadline(deadline); err != nil {
		return err
	}
	if _, err := s.conn.Write(s.frame); err != nil {
		return err
	}
	s.frame = nil
	s.f.sent.Add(1)
	s.backoff = s.f.opts.MinBackoff
	if s.failing {
		s.failing = false
		s.log.Info("syslog: collector reachable again", "server", s.d.Address, "protocol", s.d.Protocol.String())
	}
	return nil
}

// fail drops the connection and waits the backoff (or until ctx ends).
func (s *sender) fail(ctx context.Context, err error) {
	if s.conn != nil {
		s.conn.close()
		s.conn = nil
	}
	if ctx.Err() != nil {
		return
	}
	if !s.failing {
		s.failing = true
		s.log.Warn("syslog: collector unreachable, queueing", "server", s.d.Address, "protocol", s.d.Protocol.String(), "err", err)
	}
	s.f.setState(Retrying)
	t := time.NewTimer(s.backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	s.backoff = min(s.backoff*2, s.f.opts.MaxBackoff)
}

// drain sends what is queued while the connection holds, for at most
// DrainTimeout.
func (s *sender) drain() {
	deadline := time.Now().Add(s.f.opts.DrainTimeout)
	for s.conn != nil && time.Now().Before(deadline) && s.take() {
		if s.write(deadline) != nil {
			return
		}
	}
}

// take puts the next record to send in flight, unless one is; false: the
// queue is empty.
func (s *sender) take() bool {
	for s.frame == nil {
		e, ok := s.f.next()
		if !ok {
			return false
		}
		s.frame = s.format(e)
	}
	return true
}

// format renders e for the destination; nil: e is below its level.
func (s *sender) format(e entry) []byte {
	if e.level < s.d.Level && e.app != reportApp {
		return nil
	}
	// sequenceId counts the messages handed to the transport, 1..2147483647
	// and wrapping to 1 (RFC 5424 section 7.3.1), so a gap at the collector
	// shows a datagram lost on the way; records lost in the queue are
	// reported in a message of their own.
	seq := s.f.seq.Load()%2147483647 + 1
	s.f.seq.Store(seq)
	m := Message{
		Facility: s.d.Facility, Severity: SeverityOf(e.level), Time: e.time,
		Hostname: s.d.Hostname, AppName: e.app, ProcID: s.f.opts.ProcID, Msg: e.text,
	}
	if m.AppName == "" {
		m.AppName = s.f.opts.AppName
	}
	m.Data = []Element{{ID: "meta", Params: []Param{{Name: "sequenceId", Value: strconv.FormatUint(uint64(seq), 10)}}}}
	s.buf = m.Append(s.buf[:0], s.d.Protocol.MaxSize())
	return s.d.Protocol.AppendFrame(nil, s.buf)
}

// SeverityOf maps a slog level to a severity.
func SeverityOf(l slog.Level) Severity {
	switch {
	case l >= slog.LevelError:
		return Error
	case l >= slog.LevelWarn:
		return Warning
	case l > slog.LevelInfo:
		return Notice
	case l >= slog.LevelInfo:
		return Info
	}
	return Debug
}

// dial connects to the collector; over UDP that only fixes the peer (and
// fails early when there is no route).
func (d Destination) dial(ctx context.Context) (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	if d.Source.IsValid() {
		if d.Protocol == TCP {
			nd.LocalAddr = &net.TCPAddr{IP: d.Source.AsSlice()}
		} else {
			nd.LocalAddr = &net.UDPAddr{IP: d.Source.AsSlice()}
		}
	}
	return nd.DialContext(ctx, d.Protocol.String(), d.Address)
}

// conn is a connection to the collector. Over TCP a collector never sends,
// so a read that returns means the collector closed or reset the
// connection: dead is closed then, and the sender reconnects before it
// writes into a connection that is gone.
type conn struct {
	net.Conn
	dead    chan struct{}
	ctx     context.Context
	drain   time.Duration
	stopCut func() bool
}

// newConn wraps c. When ctx ends, a write still blocked on a stalled
// collector gets until drain to finish, not the whole WriteTimeout.
func newConn(ctx context.Context, c net.Conn, p Protocol, drain time.Duration) *conn {
	cn := &conn{Conn: c, dead: make(chan struct{}), ctx: ctx, drain: drain}
	if p == TCP {
		go func() {
			defer close(cn.dead)
			_, _ = io.Copy(io.Discard, c)
		}()
	}
	cn.stopCut = context.AfterFunc(ctx, func() { _ = c.SetWriteDeadline(time.Now().Add(drain)) })
	return cn
}

// setWriteDeadline sets d, but once ctx has ended at most drain from now:
// the cut may have run between the sender's look at ctx and this call, and
// must not be undone by the full WriteTimeout.
func (c *conn) setWriteDeadline(d time.Time) error {
	if err := c.SetWriteDeadline(d); err != nil || c.ctx.Err() == nil {
		return err
	}
	if cut := time.Now().Add(c.drain); cut.Before(d) {
		return c.SetWriteDeadline(cut)
	}
	return nil
}

func (c *conn) close() {
	c.stopCut()
	_ = c.Conn.Close()
}
