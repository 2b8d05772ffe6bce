package bench

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/pqbranch/pqbranch/boards"
	"github.com/pqbranch/pqbranch/qemu/edge"
	"github.com/pqbranch/pqbranch/qemu/lab"
	"github.com/pqbranch/pqbranch/services/status"
)

const (
	throughputBytes = 10 << 20
	throughputRuns  = 3
)

// benchMarker is what the bench's TCP streams carry; lab.Transfer
// requires one.
const benchMarker = "pqb-bench-stream"

// tunnelFigures are the end-to-end numbers of one lab run.
type tunnelFigures struct {
	Up            time.Duration // QEMU start to "tunnel established"
	Accel         string
	Tunnel, Clear float64 // TCP goodput LAN -> dc, Mbit/s
}

// measureTunnel boots the image in the lab (strongSwan edge, DHCP, LAN
// client), times the tunnel coming up, and measures TCP from the LAN
// client to the dc host through the tunnel, then over the same VM and
// links routed in clear: the appliance is switched to a config without the
// tunnel and with breakout, so only IPsec differs between the two.
func measureTunnel(ctx context.Context, b *boards.Board, img string, progress io.Writer) (f tunnelFigures, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{Board: b, Image: img, Progress: progress})
	if err != nil {
		return f, err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench: lab teardown: %w", cerr)
		}
	}()
	f.Accel = l.VM.Accel
	bootCtx, bootCancel := context.WithTimeout(ctx, 6*time.Minute)
	_, err = l.VM.WaitLine(bootCtx, regexp.MustCompile(`tunnel established`))
	bootCancel()
	if err != nil {
		return f, fmt.Errorf("bench: tunnel: %w", err)
	}
	f.Up = time.Since(l.VM.Started)

	fmt.Fprintln(progress, "bench: TCP through the tunnel")
	if f.Tunnel, err = medianGoodput(ctx, l); err != nil {
		return f, fmt.Errorf("bench: through the tunnel: %w", err)
	}

	fmt.Fprintln(progress, "bench: TCP routed in clear")
	def, err := b.DefaultConfigBytes()
	if err != nil {
		return f, err
	}
	routed, err := lab.RoutedConfig(def)
	if err != nil {
		return f, err
	}
	if err := l.WriteConfig(ctx, routed); err != nil {
		return f, err
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer waitCancel()
	if _, err := l.VM.WaitLine(waitCtx, regexp.MustCompile(`firewall applied.*breakout=true`)); err != nil {
		return f, fmt.Errorf("bench: routed config not applied: %w", err)
	}
	if _, err := l.WaitStatus(waitCtx, func(r *status.Report) bool { return !lab.Established(r) }); err != nil {
		return f, fmt.Errorf("bench: the tunnel stayed up without a tunnel config: %w", err)
	}
	if f.Clear, err = medianGoodput(ctx, l); err != nil {
		return f, fmt.Errorf("bench: routed in clear: %w", err)
	}
	return f, nil
}

// medianGoodput warms the path up until a short transfer succeeds, then
// returns the median of throughputRuns checked 10 MiB transfers.
func medianGoodput(ctx context.Context, l *lab.Lab) (float64, error) {
	warm, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		tctx, tcancel := context.WithTimeout(warm, 10*time.Second)
		res, err := lab.Transfer(tctx, l.LAN, l.Site.Host, edge.DCAddr, 64<<10, []byte(benchMarker))
		tcancel()
		if err == nil && res.Intact() {
			break
		}
		if warm.Err() != nil {
			return 0, fmt.Errorf("no path LAN -> dc: %v", err)
		}
	}
	var rates []float64
	for range throughputRuns {
		res, err := lab.Transfer(ctx, l.LAN, l.Site.Host, edge.DCAddr, throughputBytes, []byte(benchMarker))
		if err != nil {
			return 0, err
		}
		if !res.Intact() {
			return 0, fmt.Errorf("transfer damaged: sent %d, received %d bytes", res.Sent, res.Received)
		}
		rates = append(rates, res.Mbps())
	}
	slices.Sort(rates)
	return rates[len(rates)/2], nil
}
