package dhcpd

import (
	"net"
	"net/netip"
	"time"

	"github.com/pqbranch/pqbranch/services/config"
)

// leaseState is where one client's lease stands.
type leaseState uint8

const (
	offered leaseState = iota + 1 // held for the client between OFFER and REQUEST
	bound                         // acknowledged
)

func (s leaseState) String() string {
	switch s {
	case offered:
		return "offered"
	case bound:
		return "bound"
	}
	return "unknown"
}

// offerHold is how long an offered address stays reserved for the client
// that was offered it.
const offerHold = time.Minute

// declineHold keeps an address a client found in use (DHCPDECLINE) out of
// the pool for a while.
const declineHold = 10 * time.Minute

// lease is one client's address. Expired leases stay in the table, so a
// client that comes back gets its old address, until the pool runs out of
// free addresses and the oldest is reclaimed.
type lease struct {
	MAC      string // net.HardwareAddr.String()
	Addr     netip.Addr
	Expiry   time.Time
	State    leaseState
	Hostname string
}

func (l *lease) active(now time.Time) bool { return now.Before(l.Expiry) }

// table is the server's lease database. Every entry holds a distinct
// address of the pool or a reservation, so it never holds more entries than
// the pool and the reservations have addresses: a LAN host inventing MAC
// addresses cannot grow it beyond that.
type table struct {
	s        config.DHCPSettings
	byMAC    map[string]*lease
	byAddr   map[netip.Addr]*lease
	reserved map[string]netip.Addr // MAC -> reserved address
	owner    map[netip.Addr]string // reserved address -> MAC
	declined map[netip.Addr]time.Time
}

func newTable(s config.DHCPSettings) *table {
	t := &table{
		s:        s,
		byMAC:    map[string]*lease{},
		byAddr:   map[netip.Addr]*lease{},
		reserved: map[string]netip.Addr{},
		owner:    map[netip.Addr]string{},
		declined: map[netip.Addr]time.Time{},
	}
	for _, r := range s.Reservations {
		t.reserved[r.MAC.String()] = r.Address
		t.owner[r.Address] = r.MAC.String()
	}
	return t
}

func (t *table) inPool(a netip.Addr) bool {
	return a.Is4() && !a.Less(t.s.Start) && !t.s.End.Less(a) && a != t.s.Server
}

// canHave reports whether mac may hold a: its reservation, or a pool
// address nobody else holds, reserves or declined.
func (t *table) canHave(mac string, a netip.Addr, now time.Time) bool {
	if r, ok := t.reserved[mac]; ok {
		return a == r
	}
	if !t.inPool(a) {
		return false
	}
	if _, ok := t.owner[a]; ok {
		return false
	}
	if until, ok := t.declined[a]; ok && now.Before(until) {
		return false
	}
	l := t.byAddr[a]
	return l == nil || l.MAC == mac || !l.active(now)
}

// choose picks the address to offer mac: its reservation, its previous
// lease, the address it asks for, a never used pool address, or else the
// longest expired one. ok is false when the pool is exhausted.
func (t *table) choose(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if r, ok := t.reserved[mac]; ok {
		return r, true
	}
	if l := t.byMAC[mac]; l != nil && t.canHave(mac, l.Addr, now) {
		return l.Addr, true
	}
	if requested.IsValid() && t.canHave(mac, requested, now) {
		return requested, true
	}
	var oldest *lease
	for a := t.s.Start; !t.s.End.Less(a); a = a.Next() {
		if !t.canHave(mac, a, now) {
			continue
		}
		l := t.byAddr[a]
		if l == nil {
			return a, true
		}
		if oldest == nil || l.Expiry.Before(oldest.Expiry) {
			oldest = l
		}
	}
	if oldest != nil {
		return oldest.Addr, true
	}
	return netip.Addr{}, false
}

// set gives mac address a until expiry, dropping whatever else mac or a had.
func (t *table) set(mac string, a netip.Addr, st leaseState, expiry time.Time, hostname string) {
	if old := t.byMAC[mac]; old != nil {
		delete(t.byAddr, old.Addr)
	}
	if old := t.byAddr[a]; old != nil {
		delete(t.byMAC, old.MAC)
	}
	l := &lease{MAC: mac, Addr: a, Expiry: expiry, State: st, Hostname: hostname}
	t.byMAC[mac] = l
	t.byAddr[a] = l
}

// offer holds an address for mac. A client that is already bound keeps
// its lease as it is.
func (t *table) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	a, ok := t.choose(mac, requested, now)
	if !ok {
		return a, false
	}
	if l := t.byMAC[mac]; l != nil && l.Addr == a && l.State == bound && l.active(now) {
		return a, true
	}
	t.set(mac, a, offered, now.Add(offerHold), "")
	return a, true
}

// bind acknowledges a for mac, if mac may have it.
func (t *table) bind(mac string, a netip.Addr, hostname string, now time.Time) bool {
	if !t.canHave(mac, a, now) {
		return false
	}
	t.set(mac, a, bound, now.Add(t.s.LeaseTime), hostname)
	return true
}

// release ends mac's lease on a now; the entry stays so the client gets the
// same address when it comes back.
func (t *table) release(mac string, a netip.Addr, now time.Time) bool {
	l := t.byMAC[mac]
	if l == nil || l.Addr != a {
		return false
	}
	l.Expiry = now
	return true
}

// decline takes a out of the pool for a while: a client found it in use.
func (t *table) decline(mac string, a netip.Addr, now time.Time) {
	l := t.byMAC[mac]
	if l == nil || l.Addr != a {
		return
	}
	delete(t.byMAC, mac)
	delete(t.byAddr, a)
	if t.inPool(a) {
		t.declined[a] = now.Add(declineHold)
	}
	for d, until := range t.declined {
		if !now.Before(until) {
			delete(t.declined, d)
		}
	}
}

// forget drops an offer the client turned down for another server's.
func (t *table) forget(mac string) {
	if l := t.byMAC[mac]; l != nil && l.State == offered {
		delete(t.byMAC, mac)
		delete(t.byAddr, l.Addr)
	}
}

// activeBound counts the leases in force.
func (t *table) activeBound(now time.Time) int {
	n := 0
	for _, l := range t.byMAC {
		if l.State == bound && l.active(now) {
			n++
		}
	}
	return n
}

func macKey(hw net.HardwareAddr) string { return hw.String() }
