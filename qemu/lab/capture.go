package lab

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// maxReported bounds the example frames a Summary keeps per kind of finding.
const maxReported = 10

// Count is packets and bytes of one class.
type Count struct{ Packets, Bytes int64 }

// Summary is what a capture saw.
type Summary struct {
	Classes map[string]Count
	Leaks   []string // first few frames exposing LAN traffic
	Others  []string // first few frames of no accepted class
	Frames  int64
	// Truncated counts frames larger than the read buffer; KernelDrops
	// frames the kernel dropped because the reader fell behind. Either
	// means the capture did not see everything.
	Truncated   int64
	KernelDrops uint32
}

func (s Summary) String() string {
	names := make([]string, 0, len(s.Classes))
	for n := range s.Classes {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%d frames", s.Frames)
	for _, n := range names {
		fmt.Fprintf(&b, ", %s %d (%d bytes)", n, s.Classes[n].Packets, s.Classes[n].Bytes)
	}
	return b.String()
}

// Capture records and classifies every frame on one interface of a
// namespace, in both directions. It reads in-process from an AF_PACKET
// socket, so no capture tool and no pcap file stand between the frames and
// the verdicts.
type Capture struct {
	fd   int
	cls  *Classifier
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	sum     Summary
	readErr error
}

// StartCapture opens the socket inside ns, bound to ifname, and starts
// reading. Stop ends it.
func StartCapture(ns *netns.NS, ifname string, cls *Classifier) (*Capture, error) {
	c := &Capture{fd: -1, cls: cls, stop: make(chan struct{}), done: make(chan struct{}), sum: Summary{Classes: map[string]Count{}}}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind to %s: %w", ifname, err)
		}
		// A transfer at full speed must not outrun the reader: a large
		// buffer, and the kernel's drop counter checked at the end.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return fmt.Errorf("receive buffer: %w", err)
		}
		// The timeout lets the reader notice Stop.
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("lab: capture on %s in %s: %w", ifname, ns.Name, err)
	}
	// Reset the drop counter: reading the statistics clears them.
	if _, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err != nil {
		unix.Close(c.fd)
		return nil, fmt.Errorf("lab: capture statistics: %w", err)
	}
	go c.read()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read() {
	defer close(c.done)
	buf := make([]byte, 256<<10)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		c.record(buf, n)
	}
}

func (c *Capture) record(buf []byte, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum.Frames++
	if n > len(buf) {
		c.sum.Truncated++
		n = len(buf)
	}
	v := c.cls.Classify(buf[:n])
	cnt := c.sum.Classes[v.Class]
	cnt.Packets++
	cnt.Bytes += int64(n)
	c.sum.Classes[v.Class] = cnt
	if v.Leak != "" && len(c.sum.Leaks) < maxReported {
		c.sum.Leaks = append(c.sum.Leaks, v.Leak)
	}
	if v.Class == ClassOther && len(c.sum.Others) < maxReported {
		c.sum.Others = append(c.sum.Others, fmt.Sprintf("% x", buf[:min(n, 64)]))
	}
}

// Snapshot returns what the capture has seen so far.
func (c *Capture) Snapshot() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sum
	s.Classes = make(map[string]Count, len(c.sum.Classes))
	for k, v := range c.sum.Classes {
		s.Classes[k] = v
	}
	s.Leaks = append([]string(nil), c.sum.Leaks...)
	s.Others = append([]string(nil), c.sum.Others...)
	return s
}

// Stop ends the capture and returns the summary, with the kernel's drop
// count. It must be called exactly once.
func (c *Capture) Stop() (Summary, error) {
	close(c.stop)
	<-c.done
	stats, statErr := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	unix.Close(c.fd)
	s := c.Snapshot()
	c.mu.Lock()
	err := c.readErr
	c.mu.Unlock()
	if statErr != nil {
		return s, fmt.Errorf("lab: capture statistics: %w", statErr)
	}
	s.KernelDrops = stats.Drops
	if err != nil {
		return s, fmt.Errorf("lab: capture read: %w", err)
	}
	return s, nil
}
