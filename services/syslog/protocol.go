package syslog

import (
	"fmt"
	"strconv"
)

// Protocol is the transport to the collector.
type Protocol uint8

const (
	// UDP sends one message per datagram (RFC 5426). Lossy, but a
	// collector that is down costs nothing.
	UDP Protocol = iota + 1
	// TCP sends a stream of octet-counted frames (RFC 6587 section 3.4.1):
	// "MSG-LEN SP SYSLOG-MSG". The forwarder reconnects with backoff.
	TCP
)

func (p Protocol) String() string {
	switch p {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol returns the protocol named s: "udp" or "tcp".
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "udp":
		return UDP, nil
	case "tcp":
		return TCP, nil
	}
	return 0, fmt.Errorf("syslog: unknown protocol %q, expected \"udp\" or \"tcp\"", s)
}

// MaxSize is the largest message the forwarder sends over p; longer ones
// are truncated. Over UDP it is the 2048 octets every receiver should
// accept (RFC 5426 section 3.2), which also keeps a datagram within two
// fragments; over TCP it is rsyslog's and syslog-ng's default limit.
func (p Protocol) MaxSize() int {
	if p == TCP {
		return 8192
	}
	return 2048
}

// AppendFrame appends msg framed for p: as it is for a UDP datagram, with
// its octet count for TCP.
func (p Protocol) AppendFrame(b, msg []byte) []byte {
	if p == TCP {
		b = strconv.AppendInt(b, int64(len(msg)), 10)
		b = append(b, ' ')
	}
	return append(b, msg...)
}
