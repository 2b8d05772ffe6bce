package ike

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sk"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
)

// Options are the runtime knobs that are not part of the appliance config.
type Options struct {
	Installer xfrm.Installer // nil: xfrm.NewMemory(), i.e. -no-install
	Logger    *slog.Logger   // nil: slog.Default()

	LocalPort     uint16 // 0: ephemeral; the appliance uses 500
	LocalNATPort  uint16 // 0: ephemeral; the appliance uses 4500
	RemoteNATPort uint16 // 0: 4500
	ESPInUDP      bool   // mark the NAT-T socket for kernel ESP-in-UDP decapsulation
	// NewBind opens the ports of each attempt; nil: DialUDP. Tests pass an
	// in-memory Bind (bindtest).
	NewBind func(context.Context, BindConfig) (Bind, error)

	RetransmitBase  time.Duration // first retransmission timeout, default 1s; doubles each time
	RetransmitMax   time.Duration // longest gap between retransmissions, default 8s
	RetransmitTries int           // sends per request, default 6
	ReconnectMin    time.Duration // backoff before re-establishing, default 2s
	// ReconnectMax caps the backoff, default 15s. With RetransmitMax it
	// bounds how long a tunnel stays down after the edge is back, whatever
	// the length of the outage: the longest wait is one backoff or one
	// retransmission gap, about 20s with jitter.
	ReconnectMax time.Duration
	// RefusedRetry is the longest wait before retrying a rekey the edge
	// refused, default 10s; the wait is random between half and all of it.
	RefusedRetry time.Duration
	// DeleteGrace is how long a Child SA the edge replaced (or a loser of a
	// simultaneous rekey the edge created) may stay before we delete it
	// ourselves, default 10s. The edge should delete it at once; one that
	// never does must not grow our SAs without bound.
	DeleteGrace  time.Duration
	ReplayWindow uint32 // ESP anti-replay window, default 64
	// StatusInterval is how often an established tunnel reads its SAs'
	// byte counters from the kernel for Status, default 5s.
	StatusInterval time.Duration

	Rand io.Reader // nil: crypto/rand
}

func (o *Options) defaults() {
	if o.Installer == nil {
		o.Installer = xfrm.NewMemory()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NewBind == nil {
		o.NewBind = DialUDP
	}
	if o.RemoteNATPort == 0 {
		o.RemoteNATPort = 4500
	}
	if o.RetransmitBase == 0 {
		o.RetransmitBase = time.Second
	}
	if o.RetransmitMax == 0 {
		o.RetransmitMax = 8 * time.Second
	}
	if o.RetransmitTries == 0 {
		o.RetransmitTries = 6
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 2 * time.Second
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 15 * time.Second
	}
	if o.RefusedRetry == 0 {
		o.RefusedRetry = 10 * time.Second
	}
	if o.DeleteGrace == 0 {
		o.DeleteGrace = 10 * time.Second
	}
	if o.StatusInterval == 0 {
		o.StatusInterval = 5 * time.Second
	}
	if o.ReplayWindow == 0 {
		o.ReplayWindow = 64
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
}

// ikeSA is one IKE SA. We are its original initiator unless the edge
// created it by rekeying ours (responder is then set): that decides the
// I flag of our messages and which keys protect which direction.
type ikeSA struct {
	spii, spir uint64
	responder  bool // the edge is the original initiator (it rekeyed the IKE SA)
	suite      suite
	keys       keys.IKE
	out, in    *sk.Cipher
	ni, nr     []byte
	nextMID    uint32     // our next request
	peerMID    uint32     // the peer's next request
	lastResp   [][]byte   // our response to the edge's last request, as sent
	lastReq    [][32]byte // SHA-256 of that request's datagrams, the first (or fragment 1) first
	curReq     [][32]byte // the same for the request being reassembled
	respParts  sk.Reassembler
	reqParts   sk.Reassembler
	fragments  bool // peer sent IKEV2_FRAGMENTATION_SUPPORTED
	created    time.Time
	rekeyAt    time.Time
	peerCreate *peerCreate // a CREATE_CHILD_SA of the edge awaiting IKE_FOLLOWUP_KE
	deleted    bool        // the edge deleted this IKE SA
}

// flags are the header flags of our messages on sa: I when we are its
// original initiator, R for responses.
func (sa *ikeSA) flags(response bool) message.Flags {
	var f message.Flags
	if !sa.responder {
		f |= message.FlagInitiator
	}
	if response {
		f |= message.FlagResponse
	}
	return f
}

// wipe clears the SA's keys, best effort, once it is replaced or closed.
// The ciphers go too: their expanded keys are beyond our reach, but
// nothing must encrypt with a wiped SA.
func (sa *ikeSA) wipe() {
	if sa == nil {
		return
	}
	sa.keys.Wipe()
	sa.out, sa.in = nil, nil
	if pc := sa.peerCreate; pc != nil {
		keys.WipeAll(pc.shared...)
		sa.peerCreate = nil
	}
}

func (sa *ikeSA) setKeys(k keys.IKE) error {
	outKey, inKey := k.Ei, k.Er
	if sa.responder {
		outKey, inKey = k.Er, k.Ei
	}
	out, err := sk.NewCipher(outKey)
	if err != nil {
		return err
	}
	in, err := sk.NewCipher(inKey)
	if err != nil {
		return err
	}
	old := sa.keys
	sa.keys, sa.out, sa.in = k, out, in
	old.Wipe() // the keys of the previous IKE_INTERMEDIATE step
	return nil
}

// childSA is one ESP SA pair.
type childSA struct {
	spiIn, spiOut uint32
	encrBits      uint16
	in, out       xfrm.SA
	local, remote []netip.Prefix
	created       time.Time
	rekeyAt       time.Time

	// How it was created, to settle a simultaneous rekey (RFC 7296 2.8.1):
	// the SA it replaces (nil for the IKE_AUTH one), whether we initiated
	// that exchange, and the exchange's nonces.
	rekeyOf *childSA
	ours    bool
	ni, nr  []byte

	// replaced: a newer Child SA carries the traffic; this one is never
	// rekeyed again and goes when its deleter (see settleChildRekey)
	// deletes it. deleteAt: when we delete it ourselves if it is still
	// here (zero: never).
	replaced bool
	deleteAt time.Time
}

// wipe clears the Child SA's ESP keys once the kernel no longer has them.
func (c *childSA) wipe() { keys.WipeAll(c.in.Key, c.out.Key) }

// Session is the tunnel to one edge: it establishes, keeps alive, rekeys
// and re-establishes the IKE SA and its Child SA.
type Session struct {
	cfg  *Config
	opt  Options
	pol  policy
	log  *slog.Logger
	auth *authenticator
	me   identity
	peer identity

	ikeLife, childLife, dpd time.Duration

	state    State
	tr       *transport
	ike      *ikeSA
	old      *ikeSA // the IKE SA being deleted after a rekey
	children []*childSA
	policies []xfrm.Policy
	reqid    uint32
	lastRecv time.Time
	fatal    error    // set while dispatching: the peer deleted or lost the IKE SA
	rekeying ourRekey // which of our rekeys is in progress
	// keHint is the group the edge last asked for with INVALID_KE_PAYLOAD
	// (0: none): the next IKE_SA_INIT starts with it.
	keHint uint16
	// redundant is a new IKE SA the edge created in a simultaneous IKE SA
	// rekey that lost (RFC 7296 2.8.2): kept until the edge deletes it, so
	// that its Delete is answered.
	redundant *ikeSA
	// gone is the last IKE SA other than s.ike the edge deleted, its keys
	// wiped: kept only so that a repeat of that Delete, when our answer
	// was lost, gets the answer again (dispatch). Without it the edge
	// keeps the SA until it gives up retransmitting.
	gone *ikeSA

	mu sync.Mutex
	st Status
}

// New checks cfg and prepares a session; nothing is sent until Establish or Run.
func New(cfg *Config, opt Options) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opt.defaults()
	pol, err := newPolicy(cfg)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	me, err := parseIdentity(cfg.LocalID)
	if err != nil {
		return nil, fmt.Errorf("tunnel.local_id: %w", err)
	}
	peer, err := parseIdentity(cfg.RemoteID)
	if err != nil {
		return nil, fmt.Errorf("tunnel.remote_id: %w", err)
	}
	s := &Session{cfg: cfg, opt: opt, pol: pol, log: opt.Logger, auth: auth, me: me, peer: peer, reqid: 1}
	s.ikeLife, s.childLife, s.dpd = cfg.Durations()
	s.st = Status{State: StateDown.String(), AddKE: []string{}, Children: []ChildStatus{}}
	return s, nil
}

// Status returns a snapshot, with the kernel's traffic counters.
func (s *Session) Status() Status {
	s.mu.Lock()
	st := s.st
	st.AddKE = slices.Clone(st.AddKE)
	st.Children = slices.Clone(st.Children)
	s.mu.Unlock()
	return st
}

func (s *Session) update(f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.st)
}

// refreshStatus copies the SA state into the status snapshot.
func (s *Session) refreshStatus(ctx context.Context) {
	var kids []ChildStatus
	for _, c := range s.children {
		cs := ChildStatus{SPIIn: fmt.Sprintf("%08x", c.spiIn), SPIOut: fmt.Sprintf("%08x", c.spiOut)}
		for _, p := range c.local {
			cs.Local = append(cs.Local, p.String())
		}
		for _, p := range c.remote {
			cs.Remote = append(cs.Remote, p.String())
		}
		if in, err := s.opt.Installer.Stats(ctx, c.in); err == nil {
			cs.BytesIn, cs.PacketsIn = in.Bytes, in.Packets
		}
		if out, err := s.opt.Installer.Stats(ctx, c.out); err == nil {
			cs.BytesOut, cs.PacketsOut = out.Bytes, out.Packets
		}
		kids = append(kids, cs)
	}
	s.update(func(st *Status) {
		st.State = s.reportedState().String()
		st.Children = kids
		if st.Children == nil {
			st.Children = []ChildStatus{}
		}
		if s.ike != nil {
			st.SPIi, st.SPIr = fmt.Sprintf("%016x", s.ike.spii), fmt.Sprintf("%016x", s.ike.spir)
		}
		if s.tr != nil {
			st.Local, st.Remote, st.NATT = s.tr.localAddr().String(), s.tr.remoteAddr().String(), s.tr.floated
			st.BytesSent, st.BytesRecvd = s.tr.bytesSent, s.tr.bytesRecvd
		}
	})
}

// setState moves the session to st and reports it. Established is only
// reported with a Child SA installed (refreshStatus keeps that true).
func (s *Session) setState(st State) {
	s.state = st
	s.update(func(x *Status) { x.State = s.reportedState().String() })
}

// reportedState is the state for Status: an IKE SA that has lost its last
// Child SA carries no traffic, so it is not "established".
func (s *Session) reportedState() State {
	if s.state == StateEstablished && len(s.children) == 0 {
		return StateConnecting
	}
	return s.state
}

func (s *Session) setError(err error) {
	s.update(func(st *Status) { st.LastError = err.Error() })
}

// ErrPanic reports that the session hit a bug and was torn down.
var ErrPanic = errors.New("ike: session panicked")

// Run keeps the tunnel up until ctx ends, re-establishing with exponential
// backoff when the edge is lost, deletes the SA or restarts. On return the
// SAs are deleted at the edge and removed from the kernel.
//
// A panic (a bug reached by some input) does not leave the session's
// sockets and kernel SAs behind: they are released and Run returns
// ErrPanic, so whoever restarts it starts clean.
func (s *Session) Run(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
			s.log.Error("session panicked; releasing its sockets and SAs", "panic", r)
			s.releaseAfterPanic()
			s.setError(err)
		}
	}()
	backoff := s.opt.ReconnectMin
	for {
		err := s.Establish(ctx)
		if err == nil {
			backoff = s.opt.ReconnectMin
			err = s.maintain(ctx)
		}
		if ctx.Err() != nil {
			return s.Close()
		}
		s.setError(err)
		s.log.Warn("tunnel down, re-establishing", "err", err, "in", backoff)
		s.teardown(context.WithoutCancel(ctx), false)
		if err := sleep(ctx, s.jitter(backoff)); err != nil {
			return s.Close()
		}
		backoff = min(2*backoff, s.opt.ReconnectMax)
	}
}

// releaseAfterPanic removes the kernel state and closes the sockets without
// talking to the edge: the session's state cannot be trusted any more. The
// edge learns of it from the INITIAL_CONTACT of the next session.
func (s *Session) releaseAfterPanic() {
	defer func() {
		if r := recover(); r != nil {
			// teardown itself failed half-way: at least the sockets go.
			s.log.Error("teardown after panic failed", "panic", r)
			if s.tr != nil {
				s.tr.close()
				s.tr = nil
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.teardown(ctx, false); err != nil {
		s.log.Error("teardown after panic", "err", err)
	}
}

// Close deletes the IKE SA at the edge (best effort, one short attempt),
// removes the kernel state and closes the sockets.
//
// Close is final: it also wipes the session's copy of the PSK.
func (s *Session) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.teardown(ctx, true)
	keys.WipeAll(s.auth.psk)
	return err
}

func (s *Session) teardown(ctx context.Context, notify bool) error {
	if notify && s.ike != nil && s.tr != nil && len(s.children) > 0 {
		s.deleteIKE(ctx, s.ike)
	}
	err := s.removeChildren(ctx)
	if s.tr != nil {
		s.tr.close()
		s.tr = nil
	}
	s.ike.wipe()
	s.old.wipe()
	s.redundant.wipe()
	s.ike, s.old, s.redundant, s.gone, s.fatal = nil, nil, nil, nil, nil
	s.state = StateDown
	s.refreshStatus(ctx)
	s.update(func(st *Status) { st.SPIi, st.SPIr = "", "" })
	return err
}

func (s *Session) removeChildren(ctx context.Context) error {
	var errs []error
	for _, c := range s.children {
		errs = append(errs, s.opt.Installer.DelSA(ctx, c.in), s.opt.Installer.DelSA(ctx, c.out))
		c.wipe()
	}
	s.children = nil
	for _, p := range s.policies {
		errs = append(errs, s.opt.Installer.DelPolicy(ctx, p))
	}
	s.policies = nil
	return errors.Join(errs...)
}

func (s *Session) random(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.opt.Rand, b); err != nil {
		panic(fmt.Sprintf("ike: random source failed: %v", err)) // nothing sane to do without randomness
	}
	return b
}

func (s *Session) newIKESPI() uint64 {
	for {
		if v := binary.BigEndian.Uint64(s.random(8)); v != 0 {
			return v
		}
	}
}

// newESPSPI picks an inbound SPI; values below 256 are reserved.
func (s *Session) newESPSPI() uint32 {
	for {
		v := binary.BigEndian.Uint32(s.random(4))
		if v >= 256 && !slices.ContainsFunc(s.children, func(c *childSA) bool { return c.spiIn == v }) {
			return v
		}
	}
}

// jitter returns d shortened by up to 10% so that rekeys and reconnects of
// many branches do not synchronise.
func (s *Session) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	n, err := rand.Int(s.opt.Rand, big.NewInt(int64(d/10)+1))
	if err != nil {
		return d
	}
	return d - time.Duration(n.Int64())
}

// jitterUpTo returns a random duration in [0, d].
func (s *Session) jitterUpTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n, err := rand.Int(s.opt.Rand, big.NewInt(int64(d)+1))
	if err != nil {
		return d
	}
	return time.Duration(n.Int64())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
