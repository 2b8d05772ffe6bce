// Package provision is zero-touch provisioning from a USB stick: at boot, a
// FAT volume labelled PQBRANCH on a removable device, holding pqbranch.json
// in its root directory, is validated with the appliance's own config
// validator and installed as the config (config.DefaultPath) when it is valid
// and its serial is higher than the installed config's.
//
// The stick is untrusted. It is read, never mounted, through a FAT reader
// that bounds every read (fat.go); only the one root file is read, at most
// MaxConfigSize bytes; nothing on it is executed, and its bytes are used only
// after config.Parse accepted them, exactly as if they had been written to
// /data by hand.
package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pqbranch/pqbranch/services/config"
)

// Outcome is what the boot's stick check did.
type Outcome int

const (
	// NoStick: no removable FAT volume labelled PQBRANCH.
	NoStick Outcome = iota
	// Installed: the stick's config is valid and newer; it is now the
	// installed config.
	Installed
	// NotNewer: the stick's config is valid, but its serial is not higher
	// than the installed config's (e.g. the stick was left plugged in).
	NotNewer
	// Rejected: the stick's file is missing, unreadable or invalid, or
	// more than one stick is plugged in. Nothing was changed.
	Rejected
	// Failed: the stick's config is valid and newer, but writing it to the
	// data partition failed. The installed config is unchanged.
	Failed
)

var outcomeNames = map[Outcome]string{
	NoStick:   "no-stick",
	Installed: "installed",
	NotNewer:  "ignored-not-newer",
	Rejected:  "rejected",
	Failed:    "install-failed",
}

func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

func (o *Outcome) UnmarshalText(b []byte) error {
	for v, s := range outcomeNames {
		if s == string(b) {
			*o = v
			return nil
		}
	}
	names := make([]string, 0, len(outcomeNames))
	for _, v := range slices.Sorted(maps.Keys(outcomeNames)) {
		names = append(names, outcomeNames[v])
	}
	return fmt.Errorf("provision: outcome %q: expected one of %s", b, strings.Join(names, ", "))
}

// Result is the outcome of one boot's check, as the status page shows it.
type Result struct {
	Outcome Outcome `json:"outcome"`
	// Device is the stick's volume, e.g. "sda1" ("sda" for a stick with no
	// partition table).
	Device string `json:"device,omitempty"`
	// Serial is the stick config's serial, when it parsed.
	Serial int64 `json:"serial,omitempty"`
	// Previous is the installed config's serial before the check, when one
	// loaded.
	Previous *int64 `json:"previous_serial,omitempty"`
	// Errors say why a stick's config was rejected or not installed: the
	// validator's messages, with the field path of each problem.
	Errors []string `json:"errors,omitempty"`
	// Waited is how long the check took by the Provisioner's Clock, nearly
	// all of it waiting for USB devices to appear.
	Waited Duration  `json:"waited"`
	At     time.Time `json:"at"`
}

// Duration marshals as a Go duration string ("1.5s"), for people.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Provisioner checks for a stick. The zero value, with Log set, looks at
// the real /sys and /dev and installs to config.DefaultPath.
type Provisioner struct {
	// Sys is the sysfs root: block devices are listed in Sys/class/block,
	// USB host controllers in Sys/bus/usb/devices. Default "/sys".
	Sys string
	// Open opens a whole-disk block device by its kernel name ("sdb") for
	// reading. Default: /dev/NAME, read-only.
	Open func(name string) (*os.File, error)
	// ConfigPath is the installed config. Default config.DefaultPath.
	ConfigPath string
	// Default is the board's default config. An installed config equal to
	// it is no site config at all (first boot wrote it), so any valid stick
	// replaces it, whatever its serial.
	Default []byte
	// Checks are the running firmware's checks after the validator's own
	// (config.Check), the same the appliance loads its config with: a
	// stick's config this firmware would refuse is not installed, and an
	// installed config it refuses is as good as none.
	Checks []config.Check
	// Settle bounds the wait for USB mass storage at boot. Default 5s.
	Settle time.Duration
	// Clock is what Run waits on and measures Waited and At with. Default
	// (nil): the real clock; tests pass a virtual one so that the wait is
	// exact and takes no time.
	Clock Clock
	Log   *slog.Logger
}

// Clock is the time source of Run's wait for USB devices.
type Clock interface {
	Now() time.Time
	// After is like time.After: its channel receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultSettle is how long Run waits for a USB stick to enumerate.
const DefaultSettle = 5 * time.Second

// pollEvery is how often Run looks for new block devices while it waits.
const pollEvery = 250 * time.Millisecond

// secondLook is how long Run keeps looking after the first stick appeared,
// so that a second stick plugged in at power-on is seen (and refused as
// ambiguous) rather than raced.
const secondLook = time.Second

func (p *Provisioner) defaults() {
	if p.Sys == "" {
		p.Sys = "/sys"
	}
	if p.Open == nil {
		p.Open = func(name string) (*os.File, error) { return os.Open(filepath.Join("/dev", name)) }
	}
	if p.ConfigPath == "" {
		p.ConfigPath = config.DefaultPath
	}
	if p.Settle == 0 {
		p.Settle = DefaultSettle
	}
	if p.Clock == nil {
		p.Clock = realClock{}
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
}

// stick is a PQBRANCH volume found on a device, and what reading its
// config file gave.
type stick struct {
	device string // e.g. "sda1"
	config []byte
	err    error
}

// Run looks for a stick, installs its config when it is valid and newer,
// logs the outcome and returns it. Call it before the config is loaded.
func (p *Provisioner) Run(ctx context.Context) Result {
	p.defaults()
	start := p.Clock.Now()
	sticks := p.wait(ctx)
	r := p.decide(sticks)
	end := p.Clock.Now()
	r.Waited, r.At = Duration(end.Sub(start).Round(time.Millisecond)), end
	p.log(r)
	return r
}

// wait scans for sticks, and keeps scanning for up to Settle when the box
// has USB host controllers. USB enumeration is asynchronous: the host
// controller driver registers its root hubs, the hub driver then finds and
// addresses each device, and usb-storage waits delay_use (1 s by default)
// before it scans the device's SCSI LUNs, so a stick that was plugged in at
// power-on becomes a block device a second or more after init starts. A box
// with no USB host controller (a VM without one) cannot grow a stick, and
// is not kept waiting.
func (p *Provisioner) wait(ctx context.Context) []stick {
	usb := p.hasUSB()
	deadline := p.Clock.Now().Add(p.Settle)
	var seen time.Time // when the first stick appeared
	for {
		sticks := p.scan()
		now := p.Clock.Now()
		if len(sticks) > 0 && seen.IsZero() {
			seen = now
		}
		if !usb || // nothing more can appear
			(!seen.IsZero() && now.Sub(seen) >= secondLook) ||
			(seen.IsZero() && !now.Before(deadline)) {
			return sticks
		}
		select {
		case <-ctx.Done():
			return sticks
		case <-p.Clock.After(pollEvery):
		}
	}
}

// hasUSB reports whether a USB host controller is bound: each one
// registers root hubs named usbN.
func (p *Provisioner) hasUSB() bool {
	hubs, _ := filepath.Glob(filepath.Join(p.Sys, "bus/usb/devices/usb*"))
	return len(hubs) > 0
}

// scan returns the PQBRANCH volumes on the removable disks now present.
// Only the first one's config file is read: more than one is refused
// whatever they hold, and a hostile stick with 128 GPT partitions over one
// PQBRANCH volume must not make the box hold 128 configs of MaxConfigSize.
func (p *Provisioner) scan() []stick {
	var sticks []stick
	for _, name := range p.removable() {
		sticks = p.scanDisk(name, sticks)
	}
	return sticks
}

// scanDisk appends the PQBRANCH volumes of disk name to sticks.
func (p *Provisioner) scanDisk(name string, sticks []stick) []stick {
	f, err := p.Open(name)
	if err != nil { // e.g. a card reader with no card: ENOMEDIUM
		p.Log.Debug("usb stick: cannot open", "svc", "provision", "device", name, "err", err)
		return sticks
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size == 0 {
		return sticks
	}
	for _, v := range readVolumes(f, size) {
		if !v.isStick() {
			continue
		}
		s := stick{device: volumeName(name, v)}
		if len(sticks) == 0 {
			s.config, s.err = v.readConfig()
		}
		sticks = append(sticks, s)
	}
	return sticks
}

// removable lists the whole-disk block devices that can be a stick: those
// the kernel marks removable, and any attached through USB (many sticks
// and every USB SSD report removable=0).
func (p *Provisioner) removable() []string {
	dir := filepath.Join(p.Sys, "class/block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		d := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(d, "partition")); err == nil {
			continue // the partitions are read from the disk's own table
		}
		rm, _ := os.ReadFile(filepath.Join(d, "removable"))
		dev, _ := filepath.EvalSymlinks(d) // /sys/devices/pci.../usb2/2-1/...
		if strings.TrimSpace(string(rm)) == "1" || strings.Contains(dev, "/usb") {
			names = append(names, e.Name())
		}
	}
	return names
}

// volumeName is the kernel's name for a volume: the disk for a superfloppy,
// else the partition ("sda1", or "mmcblk0p1" after a digit).
func volumeName(disk string, v volume) string {
	n, ok := strings.CutPrefix(v.where, "partition ")
	if !ok {
		return disk
	}
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return disk + "p" + n
	}
	return disk + n
}

// decide validates the one stick's config and installs it when newer.
func (p *Provisioner) decide(sticks []stick) Result {
	switch len(sticks) {
	case 0:
		return Result{Outcome: NoStick}
	case 1:
	default:
		names := make([]string, len(sticks))
		for i, s := range sticks {
			names[i] = s.device
		}
		return Result{Outcome: Rejected, Device: strings.Join(names, ","), Errors: []string{
			fmt.Sprintf("%d volumes labelled %s (%s), expected one: plug in only the stick for this box", len(sticks), Label, strings.Join(names, ", ")),
		}}
	}
	s := sticks[0]
	r := Result{Device: s.device}
	name := "usb " + s.device + ":/" + FileName
	if s.err != nil {
		r.Outcome, r.Errors = Rejected, []string{name + ": " + s.err.Error()}
		return r
	}
	b := s.config
	c, err := config.Parse(name, b, p.Checks...)
	if err != nil {
		r.Outcome, r.Errors = Rejected, errorLines(err)
		return r
	}
	r.Serial = c.Serial
	installed, err := config.Load(p.ConfigPath, p.Checks...)
	switch {
	case err == nil:
		r.Previous = &installed.Serial
		if c.Serial <= installed.Serial && !p.isDefault() {
			r.Outcome = NotNewer
			return r
		}
	case errors.Is(err, os.ErrNotExist):
		// First boot: the stick's config comes before the board default.
	default:
		// The installed config cannot run; a valid stick is better.
		p.Log.Warn("usb stick: the installed config does not load; the stick's replaces it", "svc", "provision", "err", err)
	}
	if err := config.WriteFile(p.ConfigPath, b); err != nil {
		r.Outcome, r.Errors = Failed, []string{err.Error()}
		return r
	}
	r.Outcome = Installed
	return r
}

// isDefault reports whether the installed config is the board's default.
func (p *Provisioner) isDefault() bool {
	if len(p.Default) == 0 {
		return false
	}
	b, err := os.ReadFile(p.ConfigPath)
	return err == nil && bytes.Equal(b, p.Default)
}

// errorLines splits a config error into one line per field problem.
func errorLines(err error) []string {
	var ce *config.Error
	if errors.As(err, &ce) {
		lines := make([]string, len(ce.Fields))
		for i, f := range ce.Fields {
			lines[i] = ce.File + ": " + f.String()
		}
		return lines
	}
	return []string{err.Error()}
}

// log writes the one line that says what happened; tests and operators
// look for "usb stick" with outcome=.
func (p *Provisioner) log(r Result) {
	attrs := []any{"svc", "provision", "outcome", r.Outcome.String(), "waited", r.Waited.String()}
	if r.Device != "" {
		attrs = append(attrs, "device", r.Device)
	}
	switch r.Outcome {
	case NoStick:
		p.Log.Info("usb stick", attrs...)
	case Installed, NotNewer:
		attrs = append(attrs, "serial", r.Serial)
		if r.Previous != nil {
			attrs = append(attrs, "installed_serial", *r.Previous)
		}
		p.Log.Info("usb stick", attrs...)
	default:
		attrs = append(attrs, "errors", strings.Join(r.Errors, "; "))
		p.Log.Error("usb stick", attrs...)
	}
}
