package firewall

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
	"golang.org/x/sys/unix"
)

// packet is what the sniffer keeps of an IPv4 packet.
type packet struct {
	src, dst netip.Addr
	proto    uint8
}

// parseIPv4 decodes the header fields the tests look at. It is fed raw
// packets from the wire, so it must reject anything malformed.
func parseIPv4(b []byte) (packet, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return packet{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || ihl > len(b) || total < ihl {
		return packet{}, false
	}
	return packet{
		src:   netip.AddrFrom4([4]byte(b[12:16])),
		dst:   netip.AddrFrom4([4]byte(b[16:20])),
		proto: b[9],
	}, true
}

func FuzzParseIPv4(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 1, 2, 198, 19, 0, 5})
	f.Add([]byte{0x4f, 0, 0, 60})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := parseIPv4(b)
		if ok && (len(b) < 20 || !p.src.Is4() || !p.dst.Is4()) {
			t.Fatalf("accepted %x as %+v", b, p)
		}
	})
}

// sniffer records every IPv4 packet seen on one interface of a namespace.
type sniffer struct {
	fd   int
	mu   sync.Mutex
	seen []packet
	done chan struct{}
}

func sniff(t *testing.T, ns *netns.NS, ifname string) *sniffer {
	t.Helper()
	s := &sniffer{done: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_IP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, proto)
		if err != nil {
			return err
		}
		s.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := unix.Recvfrom(s.fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			if p, ok := parseIPv4(buf[:n]); ok {
				s.mu.Lock()
				s.seen = append(s.seen, p)
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { unix.Shutdown(s.fd, unix.SHUT_RDWR); unix.Close(s.fd); <-s.done })
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// count returns how many packets seen so far match f.
func (s *sniffer) count(f func(packet) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.seen {
		if f(p) {
			n++
		}
	}
	return n
}

func toPrefix(p netip.Prefix) func(packet) bool {
	return func(pk packet) bool { return p.Contains(pk.dst) }
}

// sendUDP sends n datagrams from inside ns, optionally from a given source.
func sendUDP(t *testing.T, ns *netns.NS, src, dst string, n int) {
	t.Helper()
	err := ns.Do(func() error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			c.Write([]byte("payload"))
		}
		// A TCP attempt as well: a SYN must not leak either.
		if tc, err := net.DialTimeout("tcp4", dst, 100*time.Millisecond); err == nil {
			tc.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// udpSources listens on addr inside ns and records each datagram's source.
func udpSources(t *testing.T, ns *netns.NS, addr string) func() []netip.Addr {
	t.Helper()
	var (
		mu   sync.Mutex
		srcs []netip.Addr
		c    *net.UDPConn
	)
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			srcs = append(srcs, from.Addr())
			mu.Unlock()
		}
	}()
	return func() []netip.Addr {
		mu.Lock()
		defer mu.Unlock()
		return append([]netip.Addr(nil), srcs...)
	}
}
