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
	addr := net.JoinHostPort(ApplianceLAN, "80")
	var conn net.Conn
	// The socket is created inside the LAN namespace and keeps it.
	if err := l.LAN.Do(func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, "tcp4", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab: status: connect from the LAN: %w", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	defer client.CloseIdleConnections()
	b, err := status.Fetch(ctx, client, "http://"+addr+"/status")
	if err != nil {
		return nil, fmt.Errorf("lab: status: %w", err)
	}
	return status.Decode(b)
}

// WaitStatus polls the status report every half second until ok accepts
// one or ctx ends; it then returns the last report it read.
func (l *Lab) WaitStatus(ctx context.Context, ok func(*status.Report) bool) (*status.Report, error) {
	return status.Poll(ctx, 500*time.Millisecond, l.Status, ok)
}

// Established accepts a report whose tunnel is up.
func Established(r *status.Report) bool { return r.Tunnel.State == "established" }
