package appliance

import (
	"context"
	"log/slog"
	"sync"

	"github.com/pqbranch/pqbranch/services/ike"
	"github.com/pqbranch/pqbranch/services/ike/xfrm"
	"github.com/pqbranch/pqbranch/services/status"
)

// IKETunnel runs the tunnel with package ike, installing SAs and policies
// in the kernel.
type IKETunnel struct {
	mu   sync.Mutex
	sess *ike.Session
	err  string
}

// Run keeps one IKE session for cfg up until ctx ends.
func (t *IKETunnel) Run(ctx context.Context, cfg *ike.Config, log *slog.Logger) error {
	s, err := ike.New(cfg, ike.Options{
		Installer: xfrm.Netlink{}, LocalPort: 500, LocalNATPort: 4500, ESPInUDP: true, Logger: log,
	})
	t.mu.Lock()
	t.sess = s
	t.err = ""
	if err != nil {
		t.err = err.Error()
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Status maps the session's status to the status page's.
func (t *IKETunnel) Status() status.TunnelStatus {
	t.mu.Lock()
	s, lastErr := t.sess, t.err
	t.mu.Unlock()
	if s == nil {
		return status.TunnelStatus{State: status.TunnelDown, LastError: lastErr}
	}
	return fromIKE(s.Status())
}

func fromIKE(st ike.Status) status.TunnelStatus {
	ts := status.TunnelStatus{
		State: st.State, KE: st.KE, AddKE: st.AddKE, Encr: st.Encr, PRF: st.PRF, ESP: st.ESP, LastError: st.LastError,
		Established: st.Established, IKERekeys: st.IKERekeys, ChildRekeys: st.ChildRekeys,
	}
	if st.SPIi != "" {
		ts.SPIs = append(ts.SPIs, "ike "+st.SPIi+"/"+st.SPIr)
	}
	for _, c := range st.Children {
		ts.SPIs = append(ts.SPIs, "esp in "+c.SPIIn+" out "+c.SPIOut)
		ts.Bytes.In += c.BytesIn
		ts.Bytes.Out += c.BytesOut
		ts.Packets.In += c.PacketsIn
		ts.Packets.Out += c.PacketsOut
	}
	return ts
}
