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
	warmupBytes     = 64 << 10
)

// tunnelUp is the console line of a tunnel coming up, on the first boot
// and after every reboot.
var tunnelUp = regexp.MustCompile(`tunnel established`)

// benchMarker is what the bench's TCP streams carry; lab.Transfer
// requires one.
const benchMarker = "pqb-bench-stream"

// tunnelFigures are the end-to-end numbers of one lab run.
type tunnelFigures struct {
	Accel         string
	Up            Figure // QEMU start to "tunnel established", s
	Tunnel, Clear Figure // TCP goodput LAN -> dc, Mbit/s
}

// measureTunnel boots the image in the lab (strongSwan edge, DHCP, LAN
// client), times the tunnel coming up, and measures TCP from the LAN
// client to the dc host through the tunnel, then over the same VM and
// links routed in clear: the appliance is switched to a config without the
// tunnel and with breakout, so only IPsec differs between the two. A
// figure that fails does not stop the next: the clear path is measured
// even when the tunnel never came up. ctx bounds the lab's life.
func measureTunnel(ctx context.Context, b *boards.Board, img string, progress io.Writer) (tunnelFigures, error) {
	var f tunnelFigures
	l, err := lab.Start(ctx, lab.Options{Board: b, Image: img, Progress: progress})
	if err != nil {
		return f, err
	}
	defer closeLab(l, progress)
	f.Accel = l.VM.Accel
	g := labGoodput(l)

	bootCtx, bootCancel := context.WithTimeout(ctx, 6*time.Minute)
	_, err = l.VM.WaitLine(bootCtx, tunnelUp)
	bootCancel()
	if err != nil {
		f.Up = figure(0, fmt.Errorf("tunnel: %w", err))
		f.Tunnel = f.Up
	} else {
		f.Up = measured(time.Since(l.VM.Started).Seconds())
		fmt.Fprintln(progress, "bench: TCP through the tunnel")
		rate, err := g.median(ctx)
		f.Tunnel = figure(rate, wrap("through the tunnel", err))
	}

	fmt.Fprintln(progress, "bench: TCP routed in clear")
	rate, err := routedGoodput(ctx, b, l, g)
	f.Clear = figure(rate, wrap("routed in clear", err))
	return f, nil
}

// routedGoodput switches the lab's appliance to the routed config and
// measures the clear path.
func routedGoodput(ctx context.Context, b *boards.Board, l *lab.Lab, g goodput) (float64, error) {
	def, err := b.DefaultConfigBytes()
	if err != nil {
		return 0, err
	}
	routed, err := lab.RoutedConfig(def)
	if err != nil {
		return 0, err
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 3*time.Minute)
	defer waitCancel()
	if err := l.WriteConfig(waitCtx, routed); err != nil {
		return 0, err
	}
	if _, err := l.VM.WaitLine(waitCtx, regexp.MustCompile(`firewall applied.*breakout=true`)); err != nil {
		return 0, fmt.Errorf("routed config not applied: %w", err)
	}
	if _, err := l.WaitStatus(waitCtx, func(r *status.Report) bool { return !lab.Established(r) }); err != nil {
		return 0, fmt.Errorf("the tunnel stayed up without a tunnel config: %w", err)
	}
	return g.median(ctx)
}

// closeLab tears the lab down. A teardown that fails does not undo the
// figures measured before it: it is reported, not returned.
func closeLab(l *lab.Lab, progress io.Writer) {
	if err := l.Close(); err != nil {
		fmt.Fprintf(progress, "bench: lab teardown: %v\n", err)
	}
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// goodput measures one path with checked TCP transfers, each under its
// own deadline: a transfer that stalls (a route gone mid-stream) fails
// the figure within its limit instead of holding the whole bench.
type goodput struct {
	transfer func(ctx context.Context, n int64) (lab.TransferResult, error)
	limit    func(n int64) time.Duration // one transfer's deadline
	grace    time.Duration               // after which a transfer that ignores its deadline is abandoned
	warmFor  time.Duration               // how long the path may take to carry a first transfer
	warmEach time.Duration               // one warm-up transfer's deadline
}

func labGoodput(l *lab.Lab) goodput {
	return goodput{
		transfer: func(ctx context.Context, n int64) (lab.TransferResult, error) {
			return lab.Transfer(ctx, l.LAN, l.Site.Host, edge.DCAddr, n, []byte(benchMarker))
		},
		limit:    transferLimit,
		grace:    30 * time.Second,
		warmFor:  time.Minute,
		warmEach: 10 * time.Second,
	}
}

// once runs one checked transfer of n bytes under the deadline limit and
// returns its goodput.
func (g goodput) once(ctx context.Context, n int64, limit time.Duration) (float64, error) {
	var res lab.TransferResult
	err := within(ctx, limit, g.grace, func(ctx context.Context) error {
		r, err := g.transfer(ctx, n)
		res = r
		return err
	})
	if err != nil { // when abandoned, the transfer may still write res
		return 0, err
	}
	if !res.Intact() {
		return 0, fmt.Errorf("transfer damaged: sent %d, received %d bytes", res.Sent, res.Received)
	}
	return res.Mbps(), nil
}

// median warms the path up until a short transfer succeeds, then returns
// the median of throughputRuns transfers of throughputBytes.
func (g goodput) median(ctx context.Context) (float64, error) {
	warm, cancel := context.WithTimeout(ctx, g.warmFor)
	defer cancel()
	for {
		_, err := g.once(warm, warmupBytes, g.warmEach)
		if err == nil {
			break
		}
		select {
		case <-warm.Done():
			return 0, fmt.Errorf("no path LAN -> dc within %v: %w", g.warmFor, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var rates []float64
	for i := range throughputRuns {
		rate, err := g.once(ctx, throughputBytes, g.limit(throughputBytes))
		if err != nil {
			return 0, fmt.Errorf("transfer %d of %d (%d MiB): %w", i+1, throughputRuns, throughputBytes>>20, err)
		}
		rates = append(rates, rate)
	}
	slices.Sort(rates)
	return rates[len(rates)/2], nil
}
