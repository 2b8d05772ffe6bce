// Package dhcpd is the appliance's DHCPv4 server for the LAN: one pool, a
// lease time, the appliance as router and resolver, static reservations by
// MAC address, and leases kept on /data so hosts keep their addresses
// across reboots and updates. Its socket is bound to the LAN interface, so
// it never answers on the WAN, and its lease table is bounded by the pool.
package dhcpd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/pqbranch/pqbranch/services/config"
)

// Options configure a server.
type Options struct {
	Interface string // the LAN interface; the socket is bound to it
	Settings  config.DHCPSettings
	DNS       []netip.Addr // resolvers handed out: the appliance when it serves DNS
	Domain    string       // domain name option; empty: none
	// LeaseFile keeps bound leases; empty: in memory only.
	LeaseFile string
	// FlushEvery bounds how often the lease file is written (flash wear, and
	// a LAN host renewing in a loop); default 2s. Shutdown always writes.
	FlushEvery time.Duration
	Log        *slog.Logger
	Now        func() time.Time
	// Port is the server port, 67 unless a test says otherwise.
	Port int
}

// Server is a DHCPv4 server for one LAN.
type Server struct {
	opts Options
	set  config.DHCPSettings
	log  *slog.Logger

	mu    sync.Mutex // guards table
	table *table

	requests atomic.Uint64
	acks     atomic.Uint64
}

// New returns a server with the leases of opts.LeaseFile loaded. A lease
// file that cannot be read is logged and the server starts empty: clients
// then ask for their old addresses and get them if still free.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 2 * time.Second
	}
	if opts.Port == 0 {
		opts.Port = dhcpv4.ServerPort
	}
	s := &Server{opts: opts, set: opts.Settings, log: opts.Log, table: newTable(opts.Settings)}
	if opts.LeaseFile != "" {
		n, err := s.table.loadLeases(opts.LeaseFile, opts.Now())
		if err != nil {
			s.log.Error("dhcp: starting without stored leases", "err", err)
		} else if n > 0 {
			s.log.Info("dhcp: leases restored", "n", n, "file", opts.LeaseFile)
		}
	}
	return s
}

// Stats are the server's counters for metrics.
type Stats struct {
	Leases   int    // bound leases in force
	Requests uint64 // messages handled
	Acks     uint64
}

// Stats returns the counters now.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := s.table.activeBound(s.opts.Now())
	s.mu.Unlock()
	return Stats{Leases: n, Requests: s.requests.Load(), Acks: s.acks.Load()}
}

// Run serves until ctx ends, then writes the lease file.
func (s *Server) Run(ctx context.Context) error {
	conn, err := server4.NewIPv4UDPConn(s.opts.Interface, &net.UDPAddr{Port: s.opts.Port})
	if err != nil {
		return fmt.Errorf("dhcp: listen on %s: %w", s.opts.Interface, err)
	}
	defer conn.Close()
	s.log.Info("dhcp server", "if", s.opts.Interface, "pool", s.set.Start.String()+"-"+s.set.End.String(), "lease", s.set.LeaseTime)

	dirty := make(chan struct{}, 1)
	flushed := make(chan error, 1)
	go func() { flushed <- s.flushLoop(ctx, dirty) }()

	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, maxPacket+1) // one more: an oversized datagram is seen as such
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return <-flushed
			}
			return fmt.Errorf("dhcp: read: %w", err)
		}
		s.requests.Add(1)
		s.mu.Lock()
		r, out := s.handlePacket(buf[:n], s.opts.Now())
		s.mu.Unlock()
		if out == leasesChanged {
			select {
			case dirty <- struct{}{}:
			default:
			}
		}
		if r == nil || r.msg == nil {
			continue
		}
		if r.msg.MessageType() == dhcpv4.MessageTypeAck {
			s.acks.Add(1)
		}
		if _, err := conn.WriteToUDPAddrPort(r.msg.ToBytes(), r.dst); err != nil {
			s.log.Warn("dhcp: send", "to", r.dst, "err", err)
		}
	}
}

// flushLoop writes the lease file at most every FlushEvery while leases
// change, and once more when ctx ends.
func (s *Server) flushLoop(ctx context.Context, dirty <-chan struct{}) error {
	if s.opts.LeaseFile == "" {
		<-ctx.Done()
		return nil
	}
	pending := false
	t := time.NewTicker(s.opts.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.flush()
		case <-dirty:
			pending = true
		case <-t.C:
			if pending {
				if err := s.flush(); err != nil {
					s.log.Error("dhcp: store leases", "err", err)
					continue
				}
				pending = false
			}
		}
	}
}

func (s *Server) flush() error {
	s.mu.Lock()
	b := s.table.encodeLeases()
	s.mu.Unlock()
	return saveLeases(s.opts.LeaseFile, b)
}
