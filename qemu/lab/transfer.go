package lab

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

// markerEvery is the marker's period in the stream: shorter than any TCP
// segment, so every cleartext segment of the stream carries a whole marker.
const markerEvery = 256

// TransferResult is one TCP transfer as both ends saw it.
type TransferResult struct {
	Sent, Received       int64
	SentSum, ReceivedSum [sha256.Size]byte
	Elapsed              time.Duration // from connect to the receiver's end of stream
}

// Mbps is the goodput in megabits per second.
func (r TransferResult) Mbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) * 8 / r.Elapsed.Seconds() / 1e6
}

// Intact reports whether every byte arrived unchanged.
func (r TransferResult) Intact() bool {
	return r.Sent == r.Received && r.SentSum == r.ReceivedSum
}

// Transfer sends n bytes over TCP from a process socket in namespace from
// to a listener on dstIP in namespace to, and checksums both ends. The
// stream is pseudo-random (so nothing on the path can compress it) with
// marker repeated every markerEvery bytes, for captures to look for.
func Transfer(ctx context.Context, from, to *netns.NS, dstIP string, n int64, marker []byte) (TransferResult, error) {
	if len(marker) == 0 || len(marker) > markerEvery {
		return TransferResult{}, fmt.Errorf("lab: transfer marker must be 1 to %d bytes", markerEvery)
	}
	var ln *net.TCPListener
	if err := to.Do(func() error {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(dstIP)})
		ln = l
		return err
	}); err != nil {
		return TransferResult{}, fmt.Errorf("lab: transfer: listen in %s: %w", to.Name, err)
	}
	defer ln.Close()
	if dl, ok := ctx.Deadline(); ok {
		ln.SetDeadline(dl)
	}

	type received struct {
		n   int64
		sum [sha256.Size]byte
		at  time.Time
		err error
	}
	recv := make(chan received, 1)
	go func() {
		conn, err := ln.AcceptTCP()
		if err != nil {
			recv <- received{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		h := sha256.New()
		got, err := io.Copy(h, conn)
		recv <- received{n: got, sum: [sha256.Size]byte(h.Sum(nil)), at: time.Now(), err: err}
	}()

	var conn net.Conn
	start := time.Now()
	if err := from.Do(func() error {
		c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp4", ln.Addr().String())
		conn = c
		return err
	}); err != nil {
		ln.Close() // ends the accept
		<-recv
		return TransferResult{}, fmt.Errorf("lab: transfer: connect from %s to %v: %w", from.Name, ln.Addr(), err)
	}
	res, sendErr := send(ctx, conn.(*net.TCPConn), n, marker)
	r := <-recv
	if r.err != nil || sendErr != nil {
		return res, fmt.Errorf("lab: transfer %v: %w", ln.Addr(), errors.Join(sendErr, r.err))
	}
	res.Received, res.ReceivedSum, res.Elapsed = r.n, r.sum, r.at.Sub(start)
	return res, nil
}

// send writes the stream, closes the write side and waits for the
// receiver to close.
func send(ctx context.Context, conn *net.TCPConn, n int64, marker []byte) (TransferResult, error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	h := sha256.New()
	w := io.MultiWriter(conn, h)
	src := newMarkedStream(marker)
	sent, err := io.CopyN(w, src, n)
	res := TransferResult{Sent: sent, SentSum: sum(h)}
	if err != nil {
		return res, fmt.Errorf("send after %d bytes: %w", sent, err)
	}
	if err := conn.CloseWrite(); err != nil {
		return res, fmt.Errorf("close write: %w", err)
	}
	// The receiver closes once it has read everything.
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return res, fmt.Errorf("wait for the receiver: %w", err)
	}
	return res, nil
}

func sum(h hash.Hash) [sha256.Size]byte { return [sha256.Size]byte(h.Sum(nil)) }

// markedStream is an endless pseudo-random byte stream with a marker at
// the start of every markerEvery-byte block.
type markedStream struct {
	rng    *rand.ChaCha8
	marker []byte
	pos    int // position within the current block
}

func newMarkedStream(marker []byte) *markedStream {
	return &markedStream{rng: rand.NewChaCha8([32]byte([]byte("pqbranch lab transfer stream 32b"))), marker: marker}
}

func (s *markedStream) Read(p []byte) (int, error) {
	s.rng.Read(p)
	for i := range p {
		if s.pos < len(s.marker) {
			p[i] = s.marker[s.pos]
		}
		s.pos = (s.pos + 1) % markerEvery
	}
	return len(p), nil
}
