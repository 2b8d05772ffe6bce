package appliance

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/pqbranch/pqbranch/services/lan/dhcpd"
	"github.com/pqbranch/pqbranch/services/lan/dnsfwd"
	"github.com/pqbranch/pqbranch/services/lan/ra"
	"github.com/pqbranch/pqbranch/services/metrics"
	"github.com/pqbranch/pqbranch/services/network"
)

// The LAN services: DHCP, the DNS forwarder and IPv6 router adverts, each
// on only when the config says so.

// leaseFile keeps the DHCP leases beside the config on the data partition,
// so they survive reboots and A/B updates.
func (a *Appliance) leaseFile() string {
	return filepath.Join(filepath.Dir(a.opts.ConfigPath), "dhcp-leases.json")
}

func (a *Appliance) runDHCP(ctx context.Context) error {
	cfg := a.store.Current()
	set, ok := cfg.DHCP()
	if !cfg.Firewall.LAN.DHCP || !ok {
		<-ctx.Done()
		return nil
	}
	dns := cfg.DNS.Servers
	if cfg.Firewall.LAN.DNS {
		dns = []netip.Addr{set.Server}
	}
	domain := ""
	if len(cfg.DNS.Search) > 0 {
		domain = cfg.DNS.Search[0]
	}
	s := dhcpd.New(dhcpd.Options{
		Interface: a.roles.LAN, Settings: set, DNS: dns, Domain: domain,
		LeaseFile: a.leaseFile(), Log: a.log.With("svc", "dhcp"),
	})
	a.dhcp.Store(s)
	return s.Run(ctx)
}

func (a *Appliance) runDNS(ctx context.Context) error {
	cfg := a.store.Current()
	lan, ok := firstV4(cfg.LAN.Addresses)
	if !cfg.Firewall.LAN.DNS || !ok {
		<-ctx.Done()
		return nil
	}
	listen := []netip.AddrPort{netip.AddrPortFrom(lan, 53)}
	if ula, ok := a.lanULA(); ok && cfg.LAN.ULA {
		listen = append(listen, netip.AddrPortFrom(ula, 53))
	}
	src, _ := cfg.InternalSource()
	f := dnsfwd.New(dnsfwd.Options{
		Listen: listen,
		// Read at each query: a change of dns.servers or a new WAN lease
		// applies without a restart.
		Upstreams: func() []netip.Addr {
			if s := a.store.Current().DNS.Servers; len(s) > 0 {
				return s
			}
			if p := a.wanDNS.Load(); p != nil {
				return *p
			}
			return nil
		},
		Internal: cfg.DNS.Internal, InternalSource: src,
		Log: a.log.With("svc", "dns"),
	})
	a.dns.Store(f)
	return f.Serve(ctx)
}

func (a *Appliance) runRA(ctx context.Context) error {
	cfg := a.store.Current()
	if !cfg.LAN.ULA {
		<-ctx.Done()
		return nil
	}
	var rdnss []netip.Addr
	if ula, ok := a.lanULA(); ok && cfg.Firewall.LAN.DNS {
		rdnss = []netip.Addr{ula}
	}
	return ra.Run(ctx, ra.Options{Interface: a.roles.LAN, MTU: cfg.LinkMTU(), RDNSS: rdnss, Log: a.log.With("svc", "ra")})
}

// lanULA is the appliance's ULA address on the LAN, derived as the network
// service derives it (from the WAN MAC address).
func (a *Appliance) lanULA() (netip.Addr, bool) {
	wan, err := net.InterfaceByName(a.roles.WAN)
	if err != nil || len(wan.HardwareAddr) == 0 {
		return netip.Addr{}, false
	}
	return network.ULAAddress(network.ULA(wan.HardwareAddr), 0).Addr(), true
}

func (a *Appliance) dhcpStats() metrics.DHCPStats {
	s := a.dhcp.Load()
	if s == nil {
		return metrics.DHCPStats{}
	}
	st := s.Stats()
	return metrics.DHCPStats{Leases: st.Leases, Requests: st.Requests}
}

func (a *Appliance) dnsStats() metrics.DNSStats {
	f := a.dns.Load()
	if f == nil {
		return metrics.DNSStats{}
	}
	st := f.Stats()
	return metrics.DNSStats{Queries: st.Queries, CacheHits: st.CacheHits, Internal: st.Internal, Failures: st.Failures, Dropped: st.Dropped}
}
