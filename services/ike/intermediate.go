package ike

import (
	"context"
	"fmt"

	"github.com/pqbranch/pqbranch/services/ike/kex"
	"github.com/pqbranch/pqbranch/services/ike/keys"
	"github.com/pqbranch/pqbranch/services/ike/message"
)

// IKE_INTERMEDIATE (RFC 9242, RFC 9370): one exchange per additional key
// exchange between IKE_SA_INIT and IKE_AUTH. We only ever initiate it.

// intermediate runs additional key exchange n (RFC 9370) in IKE_INTERMEDIATE
// and extends the IntAuth chain (RFC 9242) with both messages.
func (s *Session) intermediate(ctx context.Context, hs *handshake, n int, method uint16) error {
	sa := hs.sa
	ke, err := kex.NewInitiator(method, s.opt.Rand)
	if err != nil {
		return err
	}
	pi, pr := sa.keys.Pi, sa.keys.Pr // the keys protecting this exchange
	resp, sealed, err := s.request(ctx, sa, message.IKE_INTERMEDIATE, []message.Payload{&message.KE{Group: method, Data: ke.Public()}})
	if err != nil {
		return fmt.Errorf("IKE_INTERMEDIATE %d: %w", n+1, err)
	}
	reqHeader := message.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: message.IKE_INTERMEDIATE, Flags: message.FlagInitiator, MessageID: resp.Header.MessageID}
	hs.intI = keys.IntAuth(sa.suite.prf, pi, hs.intI, keys.IntAuthInput(reqHeader, sealed.Inner, sealed.Plain))
	hs.intR = keys.IntAuth(sa.suite.prf, pr, hs.intR, keys.IntAuthInput(resp.Header, resp.Inner, resp.Plain))
	if n := message.FirstError(resp.Payloads); n != nil {
		return &ErrRefused{Exchange: message.IKE_INTERMEDIATE, Notify: n.NotifyType}
	}
	kr := message.Find[*message.KE](resp.Payloads)
	if kr == nil || kr.Group != method {
		return fmt.Errorf("IKE_INTERMEDIATE %d: response lacks a %s KE payload", n+1, kex.Name(method))
	}
	shared, err := ke.Complete(kr.Data)
	if err != nil {
		return fmt.Errorf("IKE_INTERMEDIATE %d: %w", n+1, err)
	}
	seed := keys.SKEYSEEDNext(sa.suite.prf, sa.keys.D, shared, sa.ni, sa.nr)
	defer keys.WipeAll(shared, seed)
	return sa.setKeys(keys.Derive(sa.suite.prf, seed, sa.ni, sa.nr, sa.spii, sa.spir, keys.Lengths{Enc: sa.suite.encKeyLen()}))
}
