// Package xfrm installs negotiated ESP SAs and their policies in the kernel.
// The IKE daemon only sees the Installer interface, so it runs (and is
// tested) on hosts without kernel ESP; Memory records instead of installing.
package xfrm

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// SA is one direction of an ESP Child SA in tunnel mode with AES-GCM-16.
type SA struct {
	Src, Dst     netip.Addr // outer tunnel endpoints
	SPI          uint32
	Key          []byte // AES key followed by the 4-byte salt (RFC 4106)
	ICVBits      int
	ReplayWindow uint32
	ReqID        uint32
	Encap        *Encap // ESP in UDP (RFC 3948) when NAT-T is in use
	SoftLife     time.Duration
	HardLife     time.Duration
	Inbound      bool
}

// Encap carries the UDP ports of ESP-in-UDP encapsulation.
type Encap struct{ SrcPort, DstPort uint16 }

func (s SA) String() string {
	dir := "out"
	if s.Inbound {
		dir = "in"
	}
	return fmt.Sprintf("ESP %s %08x %v->%v", dir, s.SPI, s.Src, s.Dst)
}

// Policy steers traffic between one local and one remote subnet through the
// SAs of ReqID; it covers the out, in and fwd directions.
type Policy struct {
	Local, Remote     netip.Prefix
	LocalGW, RemoteGW netip.Addr // outer tunnel endpoints
	ReqID             uint32
}

// Counters are an SA's traffic counters.
type Counters struct{ Bytes, Packets uint64 }

// Installer is what the IKE daemon needs from the kernel.
type Installer interface {
	AddSA(ctx context.Context, sa SA) error
	DelSA(ctx context.Context, sa SA) error
	AddPolicy(ctx context.Context, p Policy) error
	DelPolicy(ctx context.Context, p Policy) error
	Stats(ctx context.Context, sa SA) (Counters, error)
}
