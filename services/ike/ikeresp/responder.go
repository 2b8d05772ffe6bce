// Package ikeresp is an in-process IKEv2 responder for tests and benchmarks
// of the initiator: the hybrid handshake, fragmentation, rekeys and a set of
// hostile behaviours, without strongSwan. It is deliberately separate code
// from the initiator (sharing only the codec and primitives), so the two
// cannot agree on a mistake by construction.
package ikeresp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/pqbranch/pqbranch/services/ike/bindtest"
	"github.com/pqbranch/pqbranch/services/ike/message"
	"github.com/pqbranch/pqbranch/services/ike/sig"
)

// Config is the responder's policy.
type Config struct {
	ID     string // our identity, an FQDN
	PeerID string // expected initiator FQDN identity; empty accepts any
	PSK    []byte

	Signer crypto.Signer  // certificate auth: our key ...
	Chain  [][]byte       // ... and certificate chain (DER, leaf first)
	Roots  *x509.CertPool // CAs for the initiator's certificate

	KE    []uint16 // acceptable KE groups, preferred first; default X25519
	AddKE []uint16 // acceptable ADDKE methods; nil: we predate RFC 9370 and ignore ADDKE
	// RejectUnknownTypes, with AddKE nil, refuses a proposal carrying
	// transform types it does not know instead of ignoring them, as RFC
	// 7296 3.3.6 demands and strongSwan 5.9 does.
	RejectUnknownTypes bool

	// LowNonce makes some of our rekey nonces all zero, the lowest there
	// is, so a test decides who loses a simultaneous rekey (RFC 7296 2.8.1).
	LowNonce LowNonce

	FragmentSize int  // largest IKE message we send before fragmenting; 0: never
	Cookie       bool // demand a COOKIE round trip first
	FakeNAT      bool // claim to be behind NAT, as strongSwan with kernel-libipsec does
	Hostile      Hostile
}

// Hostile switches on misbehaviour; the initiator must fail cleanly or
// ignore, never panic, never settle for a classical-only SA.
type Hostile struct {
	ShortCiphertext bool   // ML-KEM ciphertext one byte short
	BadCiphertext   bool   // ML-KEM ciphertext with flipped bits (implicit rejection)
	WrongKEGroup    bool   // IKE_SA_INIT KE payload of another group than selected
	NoIntermediate  bool   // select ADDKE without INTERMEDIATE_EXCHANGE_SUPPORTED
	UnauthNotify    bool   // precede the IKE_AUTH response with a plaintext AUTHENTICATION_FAILED
	Garbage         bool   // precede every response with junk datagrams
	Flood           int    // send every response this many extra times
	InvalidKE       uint16 // answer INVALID_KE_PAYLOAD asking for this group
	Silent          bool   // stop answering after IKE_AUTH (a lost peer)
	WrongPSK        []byte // authenticate with this PSK instead
	// RefuseChildRekeys and RefuseIKERekeys answer the initiator's
	// CREATE_CHILD_SA for a Child SA or an IKE SA with this error notify.
	RefuseChildRekeys, RefuseIKERekeys message.NotifyType
	// Forged IKE_SA_INIT answers sent before the real one, from the same
	// socket: ForgeCookies COOKIE replies with random cookies of
	// ForgeCookieLen bytes (default 16), then one error notify ForgeInitError
	// and one INVALID_KE_PAYLOAD asking for ForgeInvalidKE.
	ForgeCookies   int
	ForgeCookieLen int
	ForgeInitError message.NotifyType
	ForgeInvalidKE uint16
	NoInitAnswer   bool // send only the forged answers, never the real one
	NonceLen       int  // length of our IKE_SA_INIT nonce, default 32
	LoseIKEDeletes int  // ignore this many IKE SA Delete requests, as a lossy path would
	// KeepReplaced: after our own Child SA rekeys, never delete the SA
	// replaced (the initiator has to prune it).
	KeepReplaced bool
	// CrashMidRekey: on the answer to our own CREATE_CHILD_SA, forget
	// every SA instead of sending IKE_FOLLOWUP_KE, as an edge restarting
	// in the middle of its rekey does.
	CrashMidRekey bool
	// AddKENone answers IKE_SA_INIT with ADDKE1 NONE, which the initiator
	// did not offer; DuplicateAddKE lists the chosen ADDKE1 twice.
	AddKENone, DuplicateAddKE bool
	// RekeyAddKENone: our own rekeys offer NONE as every ADDKE, a
	// downgrade to a classical-only SA.
	RekeyAddKENone bool
}

// LowNonce says which of our rekey nonces are all zero.
type LowNonce uint8

const (
	LowNonceNone   LowNonce = iota
	LowNonceOwn             // Ni of the rekeys we start: our exchange loses a collision
	LowNonceAnswer          // Nr of our answers to the initiator's rekeys: its exchange loses
)

func (l LowNonce) String() string {
	switch l {
	case LowNonceNone:
		return "none"
	case LowNonceOwn:
		return "own"
	case LowNonceAnswer:
		return "answer"
	}
	return fmt.Sprintf("LowNonce(%d)", uint8(l))
}

// rekeyNonce is a nonce for a rekey exchange, all zero when cfg.LowNonce
// says so for this kind (own: we initiate it).
func (r *Responder) rekeyNonce(own bool) []byte {
	if (own && r.cfg.LowNonce == LowNonceOwn) || (!own && r.cfg.LowNonce == LowNonceAnswer) {
		return make([]byte, 32)
	}
	return random(32)
}

// Stats counts what the responder saw.
type Stats struct {
	Inits, Intermediates, Auths int
	ChildRekeys, IKERekeys      int
	FollowupKEs, Informationals int
	DeletesIKE, DeletesESP      int
	AuthFailedIn                int // AUTHENTICATION_FAILED from the initiator
	FragmentsIn, FragmentsOut   int
	CookiesSent, InvalidKESent  int
	ActiveIKE                   int
	LastKE                      uint16
	LastAddKE                   []uint16
	ChildKeys                   map[uint32][]byte // by SPI, both directions of every live Child SA
	NATPortUsed                 bool
	Dropped                     int
	// Rekeys we started (RekeyChild, RekeyIKE) and how they ended.
	OwnChildRekeys, OwnIKERekeys int
	FollowupKEsSent              int
	RekeysRefused, RekeysFailed  int
	LastRefusal                  message.NotifyType
	ResponsesIn                  int // datagrams that looked like responses to our requests
	RefusedChild, RefusedIKE     int // rekeys of the initiator we refused (Hostile.Refuse*)
	ForgedSent                   int // forged IKE_SA_INIT answers (Hostile.Forge*)
	InitialContacts              int // IKE_AUTH requests carrying INITIAL_CONTACT
	DeletesLost                  int // IKE SA Deletes ignored (Hostile.LoseIKEDeletes)
	// Simultaneous Child SA rekeys settled, and how many of them our own
	// exchange won.
	Collisions, CollisionsWon int
	Crashed                   int // times Hostile.CrashMidRekey forgot every SA
	// PeerAuthScheme is how the initiator signed its last certificate
	// AUTH that verified (unknown with PSK).
	PeerAuthScheme sig.Scheme
}

// Responder serves IKE on two loopback UDP sockets, or on the Peer end of
// an in-memory link (NewMemory).
type Responder struct {
	cfg       Config
	ike, nat  *net.UDPConn   // nil over memory
	mem       *bindtest.Peer // nil over sockets
	cookieKey []byte

	mu    sync.Mutex
	sas   map[uint64]*sa // by our SPI
	inits map[uint64]*sa // by initiator SPI, for IKE_SA_INIT retransmissions
	stats Stats
	wg    sync.WaitGroup
}

// New listens on 127.0.0.1 ephemeral ports.
func New(cfg Config) (*Responder, error) {
	if len(cfg.KE) == 0 {
		cfg.KE = []uint16{message.KE_X25519}
	}
	ike, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	nat, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		ike.Close()
		return nil, err
	}
	r := newResponder(cfg)
	r.ike, r.nat = ike, nat
	return r, nil
}

// NewMemory is a responder at the Peer end of an in-memory link, at the
// link's Remote and RemoteNAT addresses; the initiator uses the link's Bind.
func NewMemory(cfg Config, peer *bindtest.Peer) *Responder {
	if len(cfg.KE) == 0 {
		cfg.KE = []uint16{message.KE_X25519}
	}
	r := newResponder(cfg)
	r.mem = peer
	return r
}

func newResponder(cfg Config) *Responder {
	key := make([]byte, 32)
	rand.Read(key)
	r := &Responder{cfg: cfg, cookieKey: key, sas: map[uint64]*sa{}, inits: map[uint64]*sa{}}
	r.stats.ChildKeys = map[uint32][]byte{}
	return r
}

// Addr is the IKE port's address; NATPort the NAT-T port.
func (r *Responder) Addr() netip.AddrPort {
	if r.mem != nil {
		return r.mem.Addrs().Remote
	}
	return r.ike.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (r *Responder) NATPort() uint16 {
	if r.mem != nil {
		return r.mem.Addrs().RemoteNAT.Port()
	}
	return r.nat.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}

// Serve answers until ctx ends, then closes the sockets.
func (r *Responder) Serve(ctx context.Context) {
	if r.mem != nil {
		r.serveMemory(ctx)
		return
	}
	r.wg.Add(2)
	go r.read(r.ike, false)
	go r.read(r.nat, true)
	<-ctx.Done()
	r.ike.Close()
	r.nat.Close()
	r.wg.Wait()
}

// Stats returns a copy of the counters.
func (r *Responder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.ActiveIKE = len(r.sas)
	st.ChildKeys = map[uint32][]byte{}
	for _, s := range r.sas {
		for _, c := range s.children {
			st.ChildKeys[c.spiIn], st.ChildKeys[c.spiOut] = c.keyIn, c.keyOut
		}
	}
	return st
}

// Restart forgets every SA, as a rebooted edge would.
func (r *Responder) Restart() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sas, r.inits = map[uint64]*sa{}, map[uint64]*sa{}
}

// SetSilent makes the responder stop (or resume) answering established SAs.
func (r *Responder) SetSilent(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.Hostile.Silent = v
}

// DeleteIKE sends an INFORMATIONAL Delete for every IKE SA to its initiator.
func (r *Responder) DeleteIKE() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sas) == 0 {
		return errors.New("no IKE SA")
	}
	for id, s := range r.sas {
		r.request(s, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
		delete(r.sas, id)
	}
	return nil
}

func (r *Responder) read(c *net.UDPConn, natPort bool) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.receive(append([]byte(nil), buf[:n]...), from, natPort)
	}
}

// serveMemory answers what the initiator sends over the in-memory link
// until ctx ends.
func (r *Responder) serveMemory(ctx context.Context) {
	for {
		d, err := r.mem.Recv(ctx)
		if err != nil {
			return
		}
		r.Receive(d)
	}
}

// Receive handles one datagram the initiator sent over the in-memory link
// of NewMemory, as Serve does. A benchmark that reads the link itself
// calls it to time the responder's share of each exchange.
func (r *Responder) Receive(d bindtest.Datagram) {
	a := r.mem.Addrs()
	from := a.Local
	if d.NATPort {
		from = a.LocalNAT
	}
	r.receive(d.B, from, d.NATPort)
}

// receive handles one datagram as it arrived on a port.
func (r *Responder) receive(b []byte, from netip.AddrPort, natPort bool) {
	if natPort {
		if len(b) < 4 || b[0]|b[1]|b[2]|b[3] != 0 {
			return
		}
		b = b[4:]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if natPort {
		r.stats.NATPortUsed = true
	}
	r.handle(b, from, natPort)
}

// write sends one datagram from the IKE or NAT-T port, as is.
func (r *Responder) write(to netip.AddrPort, natPort bool, d []byte) error {
	if r.mem != nil {
		return r.mem.Send(natPort, d)
	}
	c := r.ike
	if natPort {
		c = r.nat
	}
	_, err := c.WriteToUDPAddrPort(d, to)
	return err
}

func (r *Responder) send(to netip.AddrPort, natPort bool, dgs [][]byte) {
	times := 1 + r.cfg.Hostile.Flood
	for range times {
		if r.cfg.Hostile.Garbage {
			r.write(to, natPort, []byte("\x00\x00\x00\x00garbage that is not IKE"))
			junk := make([]byte, 60)
			rand.Read(junk)
			r.write(to, natPort, junk)
		}
		for _, d := range dgs {
			if natPort {
				d = append([]byte{0, 0, 0, 0}, d...)
			}
			r.write(to, natPort, d)
		}
	}
}

func (r *Responder) cookie(spii uint64, from netip.AddrPort) []byte {
	h := sha256.New()
	h.Write(r.cookieKey)
	fmt.Fprintf(h, "%x|%v", spii, from.Addr())
	return h.Sum(nil)[:16]
}
