// Package metrics exposes the appliance's state to Prometheus: tunnel state,
// its age, rekeys and ESP counters with the negotiated key exchanges as
// labels, DHCP leases, DNS queries, service restarts, config errors and the
// update agent's state. It is served at /metrics on the management port,
// which the firewall opens on the LAN side only.
//
// Everything is read at scrape time from the same sources as the status
// report, so the two never disagree and nothing is kept twice.
package metrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pqbranch/pqbranch/services/status"
)

// Sources are read at each scrape; a nil func leaves its metrics out.
type Sources struct {
	// Report is the status report now (status.Sources.Collect).
	Report func() status.Report
	DHCP   func() DHCPStats
	DNS    func() DNSStats
	Syslog func() SyslogStats
}

// DHCPStats are the LAN DHCP server's counters.
type DHCPStats struct {
	Leases   int
	Requests uint64
}

// DNSStats are the DNS forwarder's counters.
type DNSStats struct {
	Queries, CacheHits, Internal, Failures, Dropped uint64
}

// SyslogStats are the remote syslog forwarder's counters.
type SyslogStats struct {
	Sent, Dropped uint64
	Queued        int
	Connected     bool
}

const ns = "pqbranch"

var (
	descTunnelState = prometheus.NewDesc(ns+"_tunnel_state", "1 for the tunnel's current state.", []string{"state"}, nil)
	descTunnelUp    = prometheus.NewDesc(ns+"_tunnel_established_timestamp_seconds", "When the IKE SA in force was established (Unix time); absent while down.",
		[]string{"ke", "addke", "encr", "esp"}, nil)
	descIKERekeys   = prometheus.NewDesc(ns+"_tunnel_ike_rekeys", "IKE SA rekeys of the session in force.", nil, nil)
	descChildRekeys = prometheus.NewDesc(ns+"_tunnel_child_rekeys", "Child SA rekeys of the session in force.", nil, nil)
	descESPBytes    = prometheus.NewDesc(ns+"_tunnel_esp_bytes", "ESP payload bytes of the Child SAs in force.", []string{"direction"}, nil)
	descESPPackets  = prometheus.NewDesc(ns+"_tunnel_esp_packets", "ESP packets of the Child SAs in force.", []string{"direction"}, nil)
	descRestarts    = prometheus.NewDesc(ns+"_service_restarts_total", "Times a service failed and was restarted.", []string{"service"}, nil)
	descRunning     = prometheus.NewDesc(ns+"_service_running", "1 while the service runs.", []string{"service"}, nil)
	descConfigErr   = prometheus.NewDesc(ns+"_config_errors", "Problems in the config file; the last good config stays in force while this is not 0.", nil, nil)
	descDefaults    = prometheus.NewDesc(ns+"_config_board_default", "1 while the board's default config runs because the file is unusable.", nil, nil)
	descUpdate      = prometheus.NewDesc(ns+"_update_state", "1 for the update agent's current state.", []string{"state"}, nil)
	descInfo        = prometheus.NewDesc(ns+"_info", "The running firmware.", []string{"version", "board", "slot"}, nil)
	descLeases      = prometheus.NewDesc(ns+"_dhcp_leases", "DHCP leases in force on the LAN.", nil, nil)
	descDHCPReq     = prometheus.NewDesc(ns+"_dhcp_requests_total", "DHCP messages received on the LAN.", nil, nil)
	descDNS         = prometheus.NewDesc(ns+"_dns_queries_total", "DNS queries from the LAN, by outcome.", []string{"result"}, nil)
	descSyslogMsgs  = prometheus.NewDesc(ns+"_syslog_messages_total", "Log records for the remote syslog collector: sent, or dropped because the queue was full.", []string{"result"}, nil)
	descSyslogQueue = prometheus.NewDesc(ns+"_syslog_queued", "Log records waiting for the remote syslog collector.", nil, nil)
	descSyslogUp    = prometheus.NewDesc(ns+"_syslog_connected", "1 while the remote syslog collector is reachable.", nil, nil)
)

type collector struct{ src Sources }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTunnelState, descTunnelUp, descIKERekeys, descChildRekeys, descESPBytes, descESPPackets,
		descRestarts, descRunning, descConfigErr, descDefaults, descUpdate, descInfo, descLeases, descDHCPReq, descDNS,
		descSyslogMsgs, descSyslogQueue, descSyslogUp} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.src.Report != nil {
		r := c.src.Report()
		gauge(descInfo, 1, r.Version, r.Board, r.Slot)
		t := r.Tunnel
		// One series per state, so that a dashboard can alert on
		// state!="established" without knowing the set.
		states := status.TunnelStates
		if !contains(states, t.State) {
			states = append(append([]string(nil), states...), t.State)
		}
		for _, s := range states {
			gauge(descTunnelState, b2f(s == t.State), s)
		}
		if !t.Established.IsZero() {
			gauge(descTunnelUp, float64(t.Established.UnixNano())/1e9, t.KE, strings.Join(t.AddKE, "+"), t.Encr, t.ESP)
		}
		gauge(descIKERekeys, float64(t.IKERekeys))
		gauge(descChildRekeys, float64(t.ChildRekeys))
		// The SAs' counters restart with each rekey: gauges, not counters.
		gauge(descESPBytes, float64(t.Bytes.In), "in")
		gauge(descESPBytes, float64(t.Bytes.Out), "out")
		gauge(descESPPackets, float64(t.Packets.In), "in")
		gauge(descESPPackets, float64(t.Packets.Out), "out")
		for _, s := range r.Services {
			counter(descRestarts, float64(s.Restarts), s.Name)
			gauge(descRunning, b2f(s.State == "running"), s.Name)
		}
		gauge(descConfigErr, float64(len(r.Config.Errors)))
		gauge(descDefaults, b2f(r.Config.Defaults))
		if r.Update.Unavailable == "" {
			gauge(descUpdate, 1, r.Update.State.String())
		}
	}
	if c.src.DHCP != nil {
		d := c.src.DHCP()
		gauge(descLeases, float64(d.Leases))
		counter(descDHCPReq, float64(d.Requests))
	}
	if c.src.DNS != nil {
		d := c.src.DNS()
		forwarded := d.Queries - min(d.Queries, d.CacheHits+d.Failures)
		counter(descDNS, float64(d.CacheHits), "cache")
		counter(descDNS, float64(forwarded), "forwarded")
		counter(descDNS, float64(d.Failures), "failed")
		counter(descDNS, float64(d.Dropped), "dropped")
		counter(descDNS, float64(d.Internal), "internal")
	}
	if c.src.Syslog != nil {
		s := c.src.Syslog()
		counter(descSyslogMsgs, float64(s.Sent), "sent")
		counter(descSyslogMsgs, float64(s.Dropped), "dropped")
		gauge(descSyslogQueue, float64(s.Queued))
		gauge(descSyslogUp, b2f(s.Connected))
	}
}

// Handler serves the metrics of src in the Prometheus text format.
func Handler(src Sources) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{src})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 2})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
