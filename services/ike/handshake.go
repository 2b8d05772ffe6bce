package ike

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// The handshake: Establish runs its exchanges, each in its own file with
// both ends' parts of it (sainit.go, intermediate.go, ikeauth.go), as the
// later ones are (createchild.go, informational.go; dispatch.go takes the
// edge's requests to them).

// ErrRefused reports an error notification from the responder.
type ErrRefused struct {
	Exchange message.ExchangeType
	Notify   message.NotifyType
}

func (e *ErrRefused) Error() string {
	return fmt.Sprintf("responder refused %v: %v", e.Exchange, e.Notify)
}

// handshake carries what the IKE SA's authentication covers.
type handshake struct {
	sa       *ikeSA
	request1 []byte // our last IKE_SA_INIT request, RealMessage1
	response []byte // RealMessage2
	intI     []byte // IntAuth_iN, nil without IKE_INTERMEDIATE
	intR     []byte
}

// Establish runs IKE_SA_INIT, one IKE_INTERMEDIATE per additional key
// exchange and IKE_AUTH with the first Child SA, and installs it.
func (s *Session) Establish(ctx context.Context) error {
	if err := s.openTransport(ctx); err != nil {
		return err
	}
	s.setState(StateConnecting)
	hs, err := s.initExchange(ctx)
	if err != nil {
		return s.failed(err)
	}
	for i, method := range hs.sa.suite.addke {
		if err := s.intermediate(ctx, hs, i, method); err != nil {
			return s.failed(err)
		}
	}
	child, err := s.authExchange(ctx, hs)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			s.reportAuthFailure(ctx, hs.sa)
		}
		return s.failed(err)
	}
	if err := s.installChild(ctx, child); err != nil {
		return s.failed(err)
	}
	now := time.Now()
	hs.sa.created, hs.sa.rekeyAt = now, now.Add(s.jitter(s.ikeLife*9/10))
	s.ike = hs.sa
	s.setState(StateEstablished)
	s.update(func(st *Status) {
		st.Established, st.LastError = now, ""
		st.KE, st.AddKE, st.Encr, st.PRF = kex.Name(hs.sa.suite.ke), hs.sa.suite.addkeNames(), hs.sa.suite.encrName(), hs.sa.suite.prf.Name
		st.ESP = fmt.Sprintf("aes%dgcm16", child.encrBits)
	})
	// The one line `make run` and operators watch for.
	s.log.Info("tunnel established", "ke", kex.Name(hs.sa.suite.ke), "addke", strings.Join(hs.sa.suite.addkeNames(), "+"),
		"encr", hs.sa.suite.encrName(), "prf", hs.sa.suite.prf.Name, "esp", fmt.Sprintf("aes%dgcm16", child.encrBits))
	s.refreshStatus(ctx)
	return nil
}

func (s *Session) failed(err error) error {
	s.state = StateDown
	s.update(func(st *Status) { st.State, st.LastError = s.reportedState().String(), err.Error() })
	return err
}

// openTransport creates the sockets for a new attempt.
func (s *Session) openTransport(ctx context.Context) error {
	if s.tr != nil {
		s.tr.close()
		s.tr = nil
	}
	remote, err := s.cfg.RemoteAddrPort()
	if err != nil {
		return err
	}
	c := BindConfig{Remote: remote, RemoteNATPort: s.opt.RemoteNATPort,
		LocalPort: s.opt.LocalPort, LocalNATPort: s.opt.LocalNATPort, ESPInUDP: s.opt.ESPInUDP}
	if s.cfg.Local != "" {
		l, err := s.cfg.LocalAddrPort()
		if err != nil {
			return err
		}
		c.Local = l.Addr()
		if l.Port() != 0 {
			c.LocalPort = l.Port()
		}
	}
	b, err := s.opt.NewBind(ctx, c)
	if err != nil {
		return err
	}
	s.tr = newTransport(b)
	return nil
}
