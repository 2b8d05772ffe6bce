package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/pqbranch/pqbranch/services/status"
)

// Status reads the appliance's status report the way a LAN host does:
// over HTTP to its LAN address, from the LAN client's namespace.
func (l *Lab) Status(ctx context.Context) (*status.Report, error) {
	return l.StatusAt(ctx, net.JoinHostPort(ApplianceLAN, "80"))
}

// StatusAt reads the status report from addr ("ip:port") on the LAN: a
// box whose config puts its LAN or management port elsewhere.
func (l *Lab) StatusAt(ctx context.Context, addr string) (*status.Report, error) {
	b, err := status.Fetch(ctx, l.lanHTTP(), "http://"+addr+"/status")
	if err != nil {
		return nil, fmt.Errorf("lab: status: %w", err)
	}
	return status.Decode(b)
}

// Metrics scrapes the appliance's Prometheus endpoint on its LAN address
// and returns the text exposition.
func (l *Lab) Metrics(ctx context.Context) (string, error) {
	b, err := status.Fetch(ctx, l.lanHTTP(), "http://"+net.JoinHostPort(ApplianceLAN, "80")+"/metrics")
	if err != nil {
		return "", fmt.Errorf("lab: metrics: %w", err)
	}
	return string(b), nil
}

// lanHTTP is an HTTP client whose connections are made from the LAN
// client's namespace (a socket keeps the namespace it was created in).
func (l *Lab) lanHTTP() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := l.LAN.Do(func() (err error) {
				conn, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("connect from the LAN: %w", err)
			}
			return conn, nil
		},
	}}
}

// WaitStatus polls the status report every half second until ok accepts
// one or ctx ends; it then returns the last report it read.
func (l *Lab) WaitStatus(ctx context.Context, ok func(*status.Report) bool) (*status.Report, error) {
	return status.Poll(ctx, 500*time.Millisecond, l.Status, ok)
}

// Established accepts a report whose tunnel is up.
func Established(r *status.Report) bool { return r.Tunnel.State == "established" }
