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
	go answerNTP(conn)
	resp, err := ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: conn.LocalAddr().(*net.UDPAddr).Port, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Validate(); err != nil {
		t.Fatalf("reply rejected: %v (%+v)", err, resp)
	}
	if off := resp.ClockOffset.Abs(); off > time.Second {
		t.Errorf("clock offset %v against the same clock", resp.ClockOffset)
	}
	if resp.Stratum != 2 {
		t.Errorf("stratum %d, want 2", resp.Stratum)
	}
}
