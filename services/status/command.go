package status

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/pqbranch/pqbranch/update/agent"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/services/config"
	"github.com/pqbranch/pqbranch/services/provision"
)

// defaultURL is where the status command finds the running appliance: on
// loopback, where the endpoint also listens, at the configured port.
func defaultURL() string {
	port := config.DefaultManagementPort
	if c, err := config.Load(config.DefaultPath); err == nil {
		port = c.Firewall.Port()
	}
	return fmt.Sprintf("http://127.0.0.1:%d/status", port)
}

// maxReport bounds what the command reads from the endpoint.
const maxReport = 4 << 20

// Main is the `status` applet: it prints the running appliance's status.
func Main(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	url := fs.String("url", defaultURL(), "status endpoint")
	raw := fs.Bool("json", false, "print the raw JSON report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := Fetch(ctx, http.DefaultClient, *url)
	if err != nil {
		return err
	}
	if *raw {
		_, err := os.Stdout.Write(body)
		return err
	}
	r, err := Decode(body)
	if err != nil {
		return err
	}
	return Print(os.Stdout, r)
}

// Fetch gets the raw report from url.
func Fetch(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReport+1))
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return body, nil
}

// Decode parses a report as received from the endpoint.
func Decode(b []byte) (*Report, error) {
	if len(b) > maxReport {
		return nil, errors.New("status: report too large")
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("status: bad report: %w", err)
	}
	return &r, nil
}

// Print renders a report for a person at a console.
func Print(w io.Writer, r *Report) error {
	p := &printer{w: w}
	p.f("pqbranch %s board=%s slot=%s host=%s up %s\n", r.Version, r.Board, r.Slot, r.Hostname, time.Duration(r.Uptime))
	if r.DevKey {
		p.f("firmware signed with a DEVELOPMENT key: build with a release key (make keygen) for the field\n")
	}
	p.f("\ninterfaces:\n")
	for _, i := range r.Interfaces {
		state := "down"
		if i.Up {
			state = "up"
		}
		role := ""
		if i.Role != "" {
			role = " (" + i.Role + ")"
		}
		p.f("  %-10s%s %s mtu %d %s\n", i.Name, role, state, i.MTU, strings.Join(i.Addresses, " "))
	}
	t := r.Tunnel
	p.f("\ntunnel: %s\n", t.State)
	if t.KE != "" {
		p.f("  ke %s addke %s encr %s prf %s esp %s\n", t.KE, strings.Join(t.AddKE, ","), t.Encr, t.PRF, t.ESP)
		p.f("  spis %s  bytes in %d out %d\n", strings.Join(t.SPIs, " "), t.Bytes.In, t.Bytes.Out)
	}
	if t.LastError != "" {
		p.f("  last error: %s\n", t.LastError)
	}
	p.f("\nservices:\n")
	for _, s := range r.Services {
		p.f("  %-10s %-8s restarts %d %s\n", s.Name, s.State, s.Restarts, s.LastError)
	}
	p.f("\nclock: synced=%v server=%s\n", r.Clock.Synced, r.Clock.Server)
	printUpdate(p, r.Update)
	p.f("config: %s loaded=%v\n", r.Config.File, r.Config.Loaded)
	for _, e := range r.Config.Errors {
		p.f("  %s\n", e)
	}
	printProvision(p, r.Provision)
	if len(r.Log) > 0 {
		p.f("\nrecent log:\n")
		for _, e := range r.Log {
			p.f("  %s %s\n", e.Time.Format("15:04:05"), e.Line)
		}
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

func printUpdate(p *printer, u UpdateStatus) {
	if u.Unavailable != "" {
		p.f("\nupdate: unavailable: %s\n", u.Unavailable)
		return
	}
	p.f("\nupdate: %s", u.State)
	if u.Target != "" {
		p.f(" %s", u.Target)
	}
	if u.Total > 0 && (u.State == agent.Downloading || u.State == agent.Verifying) {
		p.f(" %.1f/%.1f MiB (%.0f%%) %.1f MiB/s", float64(u.Bytes)/(1<<20), float64(u.Total)/(1<<20), u.Percent, u.Rate/(1<<20))
	}
	if !u.WaitUntil.IsZero() {
		p.f(" until %s", u.WaitUntil.Format(time.RFC3339))
	}
	p.f("\n  window %s, security floor %d, boot order %s", u.Window, u.SecurityFloor, strings.Join(u.BootOrder, " "))
	if u.BootNext != "" {
		p.f(", next boot %s", u.BootNext)
	}
	p.f("\n")
	if u.Reason != "" {
		p.f("  %s\n", u.Reason)
	}
	if l := u.Last; l != nil {
		p.f("  last update: %s %s -> %s at %s %s\n", l.Result, l.From, l.To, l.At.Format(time.RFC3339), l.Reason)
	}
}

func printProvision(p *printer, r *provision.Result) {
	if r == nil {
		return
	}
	p.f("usb stick: %s", r.Outcome)
	if r.Device != "" {
		p.f(" %s", r.Device)
	}
	if r.Outcome == provision.Installed || r.Outcome == provision.NotNewer {
		p.f(" serial %d", r.Serial)
		if r.Previous != nil {
			p.f(" (installed %d)", *r.Previous)
		}
	}
	p.f(" at %s\n", r.At.Format(time.RFC3339))
	for _, e := range r.Errors {
		p.f("  %s\n", e)
	}
}
