package appliance

import (
	"slices"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/ike"
	"github.com/pqbranch/pqbranch/services/status"
)

func TestFromIKE(t *testing.T) {
	got := fromIKE(ike.Status{
		State: "established", KE: "x25519", AddKE: []string{"mlkem768"}, Encr: "aes256gcm16", PRF: "hmac_sha2_256", ESP: "aes256gcm16",
		SPIi: "01", SPIr: "02", Children: []ike.ChildStatus{{SPIIn: "c1", SPIOut: "c2", BytesIn: 5, BytesOut: 7, PacketsIn: 2, PacketsOut: 3}, {SPIIn: "c3", SPIOut: "c4", BytesIn: 1, PacketsIn: 1}},
		LastError: "none", Established: time.Unix(1e9, 0), IKERekeys: 1, ChildRekeys: 4,
	})
	if got.Packets.In != 3 || got.Packets.Out != 3 || !got.Established.Equal(time.Unix(1e9, 0)) || got.IKERekeys != 1 || got.ChildRekeys != 4 {
		t.Errorf("counters %+v", got)
	}
	if got.State != "established" || got.KE != "x25519" || !slices.Equal(got.AddKE, []string{"mlkem768"}) || got.ESP != "aes256gcm16" ||
		len(got.SPIs) != 3 || got.Bytes.In != 6 || got.Bytes.Out != 7 || got.LastError != "none" {
		t.Fatalf("%+v", got)
	}
	// The IKE session's state names are the ones status and metrics know.
	for _, s := range []ike.State{ike.StateDown, ike.StateConnecting, ike.StateEstablished} {
		if !slices.Contains(status.TunnelStates, s.String()) {
			t.Errorf("ike state %q is not one of status.TunnelStates %q", s, status.TunnelStates)
		}
	}
	if st := (&IKETunnel{}).Status(); st.State != "down" {
		t.Fatalf("no session: %+v", st)
	}
}
