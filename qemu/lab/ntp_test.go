package lab

import (
	"net"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

// The appliance's own NTP client (beevik/ntp, as in services/timesync)
// must accept the lab's answers.
func TestNTPServerAnswersTheAppliancesClient(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l := &Lab{}
	go answerNTP(conn, &l.clock)
	query := func() *ntp.Response {
		t.Helper()
		resp, err := ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: conn.LocalAddr().(*net.UDPAddr).Port, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Validate(); err != nil {
			t.Fatalf("reply rejected: %v (%+v)", err, resp)
		}
		return resp
	}
	resp := query()
	if off := resp.ClockOffset.Abs(); off > time.Second {
		t.Errorf("clock offset %v against the same clock", resp.ClockOffset)
	}
	if resp.Stratum != 2 {
		t.Errorf("stratum %d, want 2", resp.Stratum)
	}

	// The tests move the appliance's clock into its maintenance window
	// through this server.
	target := time.Now().Add(-36 * time.Hour)
	l.SetTime(target)
	if got := time.Now().Add(query().ClockOffset); got.Sub(target).Abs() > time.Second {
		t.Errorf("after SetTime(%v) the server says %v", target, got)
	}
}
