package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// ntpEpochOffset is the seconds between the NTP epoch (1900) and Unix's.
const ntpEpochOffset = 2208988800

// serveNTP answers SNTP on addr:123 inside ns with the lab's clock, as
// the edge's time server: the board's default config syncs from the edge,
// and without an answer the appliance waits for time before it starts the
// tunnel, which the lab's figures would then include. The caller closes
// the returned connection to stop it.
func serveNTP(ns *netns.NS, addr string, c *clock) (*net.UDPConn, error) {
	var conn *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addr), Port: 123})
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab: ntp server: %w", err)
	}
	go answerNTP(conn, c)
	return conn, nil
}

// answerNTP answers requests on conn until it is closed.
func answerNTP(conn *net.UDPConn, c *clock) {
	buf := make([]byte, 512)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if reply, ok := ntpReply(buf[:n], c.Now); ok {
			conn.WriteToUDP(reply, peer)
		}
	}
}

// ntpReply answers a client request (mode 3) as a stratum-2 server whose
// clock is clock.
func ntpReply(req []byte, clock func() time.Time) ([]byte, bool) {
	now := clock()
	if len(req) < 48 || req[0]&0x7 != 3 {
		return nil, false
	}
	version := req[0] >> 3 & 0x7
	r := make([]byte, 48)
	r[0] = version<<3 | 4 // leap 0 (synchronised), server mode
	r[1] = 2              // stratum
	r[2] = req[2]         // poll
	r[3] = 0xec           // precision 2^-20 s
	// Root delay 0, root dispersion 1/16 s.
	binary.BigEndian.PutUint32(r[8:], 1<<12)
	copy(r[12:16], "LAB\x00")
	putNTPTime(r[16:], now.Add(-time.Minute)) // reference: last set a minute ago
	copy(r[24:32], req[40:48])                // originate = the client's transmit
	putNTPTime(r[32:], now)                   // receive
	putNTPTime(r[40:], clock())               // transmit
	return r, true
}

func putNTPTime(b []byte, t time.Time) {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	binary.BigEndian.PutUint64(b, secs<<32|frac)
}
