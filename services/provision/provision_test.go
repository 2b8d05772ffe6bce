package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqbranch/pqbranch/services/config"
)

// site is a valid config with the given serial (-1: no serial field).
func site(t testing.TB, serial int64) []byte {
	t.Helper()
	s := ""
	if serial >= 0 {
		s = fmt.Sprintf(`"serial": %d, `, serial)
	}
	b := []byte(`{` + s + `"hostname": "branch-7", "wan": {"mode": "dhcp"}, "lan": {"addresses": ["198.18.1.1/24"]}}`)
	if _, err := config.Parse("test", b); err != nil {
		t.Fatalf("test config does not validate: %v", err)
	}
	return b
}

// box is a fake machine: a sysfs tree whose block devices are image files.
type box struct {
	t      *testing.T
	sys    string
	cfg    string            // the installed config's path
	images map[string]string // device name -> image file
	opened []string
}

func newBox(t *testing.T) *box {
	dir := t.TempDir()
	b := &box{t: t, sys: filepath.Join(dir, "sys"), images: map[string]string{}, cfg: filepath.Join(dir, "data", "pqbranch.json")}
	for _, d := range []string{filepath.Join(b.sys, "class/block"), filepath.Dir(b.cfg)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The internal disk and one of its partitions: never a stick.
	b.sysfs("nvme0n1", map[string]string{"removable": "0"})
	b.sysfs("nvme0n1p1", map[string]string{"partition": "1"})
	return b
}

func (b *box) sysfs(name string, files map[string]string) {
	d := filepath.Join(b.sys, "class/block", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(d, f), []byte(v+"\n"), 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// plug attaches an image as a removable disk: the device opens before
// sysfs lists it, as with the kernel.
func (b *box) plug(name, image string) {
	b.images[name] = image
	b.sysfs(name, map[string]string{"removable": "1"})
}

func (b *box) usbControllers() {
	if err := os.MkdirAll(filepath.Join(b.sys, "bus/usb/devices/usb1"), 0o755); err != nil {
		b.t.Fatal(err)
	}
}

func (b *box) install(cfg []byte) {
	if err := os.WriteFile(b.cfg, cfg, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

func (b *box) provisioner() *Provisioner {
	return &Provisioner{
		Sys:        b.sys,
		ConfigPath: b.cfg,
		Settle:     5 * time.Second,
		Clock:      newFakeClock(),
		Open: func(name string) (*os.File, error) {
			b.opened = append(b.opened, name)
			img, ok := b.images[name]
			if !ok {
				return nil, fmt.Errorf("%s: no medium", name)
			}
			return os.Open(img)
		},
	}
}

func image(t *testing.T, s stickSpec) string {
	t.Helper()
	if s.size == 0 {
		s.size = StickSize
	}
	if s.fat == 0 {
		s.fat = FAT16
	}
	p := filepath.Join(t.TempDir(), "stick.img")
	if err := writeStick(p, s); err != nil {
		t.Fatal(err)
	}
	return p
}

func stickWith(t *testing.T, cfg []byte) string {
	p := filepath.Join(t.TempDir(), "stick.img")
	if err := WriteStick(p, cfg); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	invalid := []byte(`{"serial": -2, "hostname": "branch 7", "wan": {"mode": "dhcp"}, "lan": {"addresses": ["198.18.1.1/24"]}}`)
	unknown := []byte(`{"serial": 9, "hostname": "branch-7", "wan": {"mode": "dhcp", "adress": "x"}, "lan": {"addresses": ["198.18.1.1/24"]}}`)
	boardDefault := []byte(`{"hostname": "pqbranch", "wan": {"mode": "dhcp"}, "lan": {"addresses": ["192.168.77.1/24"]}}`)
	tests := []struct {
		name      string
		installed []byte            // nil: no config on /data yet
		sticks    map[string]string // device -> image
		want      Outcome
		device    string
		serial    int64
		errs      []string // substrings, each in some error line
	}{
		{name: "no stick", installed: site(t, 1), want: NoStick},
		{name: "newer installs", installed: site(t, 1), sticks: map[string]string{"sda": stickWith(t, site(t, 2))}, want: Installed, device: "sda1", serial: 2},
		{name: "first boot installs", sticks: map[string]string{"sda": stickWith(t, site(t, 0))}, want: Installed, device: "sda1"},
		{name: "equal ignored", installed: site(t, 4), sticks: map[string]string{"sda": stickWith(t, site(t, 4))}, want: NotNewer, device: "sda1", serial: 4},
		{name: "older ignored", installed: site(t, 4), sticks: map[string]string{"sda": stickWith(t, site(t, 3))}, want: NotNewer, device: "sda1", serial: 3},
		{name: "absent serial is 0, not newer than 0", installed: site(t, 0), sticks: map[string]string{"sda": stickWith(t, site(t, -1))}, want: NotNewer, device: "sda1"},
		{name: "the board default is replaced whatever the serial", installed: boardDefault, sticks: map[string]string{"sda": stickWith(t, site(t, -1))}, want: Installed, device: "sda1"},
		{name: "a site config equal in serial is not", installed: site(t, 0), sticks: map[string]string{"sda": stickWith(t, boardDefault)}, want: NotNewer, device: "sda1"},
		{name: "broken installed config is replaced", installed: []byte(`{"hostname":`), sticks: map[string]string{"sda": stickWith(t, site(t, 1))}, want: Installed, device: "sda1", serial: 1},
		{name: "invalid config shows field errors", installed: site(t, 1), sticks: map[string]string{"sdb": stickWith(t, invalid)},
			want: Rejected, device: "sdb1", errs: []string{"usb sdb1:/pqbranch.json: serial: expected a whole number 0 or higher", "hostname: expected a host name"}},
		{name: "unknown field", installed: site(t, 1), sticks: map[string]string{"sda": stickWith(t, unknown)},
			want: Rejected, device: "sda1", errs: []string{"wan.adress: unknown field"}},
		{name: "bad JSON", installed: site(t, 1), sticks: map[string]string{"sda": stickWith(t, []byte(`{"serial": 5,, }`))},
			want: Rejected, device: "sda1", errs: []string{"line 1 column", "invalid JSON"}},
		{name: "empty file", installed: site(t, 1), sticks: map[string]string{"sda": stickWith(t, nil)},
			want: Rejected, device: "sda1", errs: []string{"pqbranch.json"}},
		{name: "file missing", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: Label, files: map[string][]byte{"readme.txt": site(t, 9)}})},
			want: Rejected, device: "sda1", errs: []string{"no pqbranch.json in the root directory"}},
		{name: "a directory, not a file", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: Label, dirs: []string{FileName}})},
			want: Rejected, device: "sda1", errs: []string{"pqbranch.json is a directory"}},
		{name: "too big", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: Label, files: map[string][]byte{FileName: bytes.Repeat([]byte(" "), MaxConfigSize+1)}})},
			want: Rejected, device: "sda1", errs: []string{"1048577 bytes, expected at most 1048576"}},
		{name: "wrong label is not a stick", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: "USBSTICK", files: map[string][]byte{FileName: site(t, 9)}})}, want: NoStick},
		{name: "no label is not a stick", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{files: map[string][]byte{FileName: site(t, 9)}})}, want: NoStick},
		{name: "label only in the boot sector", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: Label, bootLabelOnly: true, files: map[string][]byte{FileName: site(t, 9)}})},
			want: Installed, device: "sda1", serial: 9},
		{name: "lower-case label, upper-case file name", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: "pqbranch", files: map[string][]byte{"PQBRANCH.JSON": site(t, 9)}})},
			want: Installed, device: "sda1", serial: 9},
		{name: "superfloppy FAT16", installed: site(t, 1), sticks: map[string]string{"sdc": image(t, stickSpec{layout: Superfloppy, label: Label, files: map[string][]byte{FileName: site(t, 5)}})},
			want: Installed, device: "sdc", serial: 5},
		{name: "superfloppy FAT32", installed: site(t, 1), sticks: map[string]string{"sdc": image(t, stickSpec{size: 40 << 20, layout: Superfloppy, fat: FAT32, label: Label, files: map[string][]byte{FileName: site(t, 5)}})},
			want: Installed, device: "sdc", serial: 5},
		{name: "partitioned FAT32", installed: site(t, 1), sticks: map[string]string{"sdc": image(t, stickSpec{size: 40 << 20, fat: FAT32, label: Label, files: map[string][]byte{FileName: site(t, 5)}})},
			want: Installed, device: "sdc1", serial: 5},
		{name: "superfloppy FAT12", installed: site(t, 1), sticks: map[string]string{"sdc": image(t, stickSpec{size: 1 << 20, layout: Superfloppy, fat: FAT12, label: Label, files: map[string][]byte{FileName: site(t, 5)}})},
			want: Installed, device: "sdc", serial: 5},
		{name: "two sticks are ambiguous", installed: site(t, 1), sticks: map[string]string{"sda": stickWith(t, site(t, 2)), "sdb": stickWith(t, site(t, 3))},
			want: Rejected, device: "sda1,sdb1", errs: []string{"2 volumes labelled PQBRANCH (sda1, sdb1)"}},
		{name: "a stick beside another USB disk", installed: site(t, 1), sticks: map[string]string{"sda": image(t, stickSpec{label: "BACKUP", files: map[string][]byte{FileName: site(t, 9)}}), "sdb": stickWith(t, site(t, 3))},
			want: Installed, device: "sdb1", serial: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			if tc.installed != nil {
				b.install(tc.installed)
			}
			for dev, img := range tc.sticks {
				b.plug(dev, img)
			}
			var logs bytes.Buffer
			p := b.provisioner()
			p.Log = slogTo(&logs)
			p.Default = boardDefault
			r := p.Run(context.Background())

			if r.Outcome != tc.want || r.Device != tc.device || r.Serial != tc.serial {
				t.Fatalf("got %v device %q serial %d (errors %q); want %v device %q serial %d", r.Outcome, r.Device, r.Serial, r.Errors, tc.want, tc.device, tc.serial)
			}
			for _, want := range tc.errs {
				if !strings.Contains(strings.Join(r.Errors, "\n"), want) {
					t.Errorf("errors %q lack %q", r.Errors, want)
				}
			}
			if len(tc.errs) == 0 && len(r.Errors) > 0 {
				t.Errorf("unexpected errors %q", r.Errors)
			}
			if !strings.Contains(logs.String(), "outcome="+tc.want.String()) {
				t.Errorf("log %q lacks outcome=%v", logs.String(), tc.want)
			}
			for _, n := range b.opened {
				if strings.HasPrefix(n, "nvme") {
					t.Errorf("opened the internal disk %s", n)
				}
			}

			got, err := os.ReadFile(b.cfg)
			switch {
			case tc.want == Installed:
				stick := readStick(t, tc.sticks, r.Device)
				if !bytes.Equal(got, stick) {
					t.Errorf("installed %q, want the stick's %q", got, stick)
				}
				if fi, _ := os.Stat(b.cfg); fi.Mode().Perm() != 0o600 {
					t.Errorf("installed config has mode %v, want 0600", fi.Mode().Perm())
				}
			case tc.installed == nil:
				if err == nil {
					t.Errorf("a config appeared: %q", got)
				}
			case !bytes.Equal(got, tc.installed):
				t.Errorf("installed config changed to %q", got)
			}
			if ents, _ := os.ReadDir(filepath.Dir(b.cfg)); len(ents) > 1 {
				t.Errorf("files left beside the config: %v", ents)
			}
		})
	}
}

// TestRunChecks: the firmware's own checks (Provisioner.Checks) judge the
// stick's config and the installed one as the appliance's loader does.
func TestRunChecks(t *testing.T) {
	refuse9 := func(c *config.Config) []config.FieldError {
		if c.Serial == 9 {
			return []config.FieldError{{Field: "serial", Problem: "refused by this firmware"}}
		}
		return nil
	}
	for _, tc := range []struct {
		name           string
		installed, usb []byte
		want           Outcome
		serial         int64
		err            string
		installedStays bool
	}{
		{name: "a stick the firmware refuses is not installed", installed: site(t, 1), usb: site(t, 9),
			want: Rejected, err: "usb sda1:/pqbranch.json: serial: refused by this firmware", installedStays: true},
		{name: "an installed config the firmware refuses is replaced", installed: site(t, 9), usb: site(t, 2),
			want: Installed, serial: 2},
		{name: "others pass", installed: site(t, 1), usb: site(t, 2), want: Installed, serial: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			b.install(tc.installed)
			b.plug("sda", stickWith(t, tc.usb))
			p := b.provisioner()
			p.Checks = []config.Check{refuse9}
			r := p.Run(context.Background())
			if r.Outcome != tc.want || r.Serial != tc.serial || (tc.err == "") != (len(r.Errors) == 0) ||
				tc.err != "" && !strings.Contains(strings.Join(r.Errors, "\n"), tc.err) {
				t.Fatalf("got %v serial %d errors %q; want %v serial %d error %q", r.Outcome, r.Serial, r.Errors, tc.want, tc.serial, tc.err)
			}
			got, err := os.ReadFile(b.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.usb; tc.installedStays {
				if !bytes.Equal(got, tc.installed) {
					t.Errorf("installed config is %q, want it unchanged", got)
				}
			} else if !bytes.Equal(got, want) {
				t.Errorf("installed config is %q, want the stick's", got)
			}
		})
	}
}

// readStick is the config file of the one stick behind device (e.g. sda1).
func readStick(t *testing.T, sticks map[string]string, device string) []byte {
	t.Helper()
	for dev, img := range sticks {
		if !strings.HasPrefix(device, dev) {
			continue
		}
		raw, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range readVolumes(bytes.NewReader(raw), int64(len(raw))) {
			if v.isStick() {
				b, err := v.readConfig()
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
	}
	t.Fatalf("no stick behind %s", device)
	return nil
}

// TestInstallFailureKeepsConfig: when the config cannot be written, the
// outcome says so and nothing is left behind. Here the path is a directory
// (a config that cannot load, so a valid stick would replace it), which the
// rename cannot replace even as root.
func TestInstallFailureKeepsConfig(t *testing.T) {
	b := newBox(t)
	if err := os.Mkdir(b.cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.cfg, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.plug("sda", stickWith(t, site(t, 7)))
	r := b.provisioner().Run(context.Background())
	if r.Outcome != Failed || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], b.cfg) {
		t.Fatalf("got %v %q, want install-failed naming %s", r.Outcome, r.Errors, b.cfg)
	}
	if ents, _ := os.ReadDir(filepath.Dir(b.cfg)); len(ents) != 1 {
		t.Errorf("files left beside the config: %v", ents)
	}
	if keep, err := os.ReadFile(filepath.Join(b.cfg, "keep")); err != nil || string(keep) != "x" {
		t.Errorf("the old contents changed: %q, %v", keep, err)
	}
}

// fakeClock is virtual time for Run's wait: After advances it at once to
// the timer's expiry, doing on the way the things the test scheduled, so a
// wait takes no real time and ends at an exact virtual time. Run uses its
// Clock from one goroutine, and so does the fake.
type fakeClock struct {
	start, now time.Time
	events     []fakeEvent // in time order
	afters     int         // After calls: how many times Run waited
}

// fakeEvent is something that happens at a virtual time.
type fakeEvent struct {
	at time.Duration // since the clock was made
	do func()
	// wakes: do makes the waiter's other select case ready (it cancels the
	// ctx), so the wait ends at at, and the pending timer must not fire: a
	// wait that ignored ctx would block there until go test's -timeout.
	wakes bool
}

func newFakeClock() *fakeClock {
	t := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	return &fakeClock{start: t, now: t}
}

// at schedules do at virtual time d.
func (c *fakeClock) at(d time.Duration, wakes bool, do func()) {
	c.events = append(c.events, fakeEvent{at: d, do: do, wakes: wakes})
	slices.SortStableFunc(c.events, func(a, b fakeEvent) int { return int(a.at - b.at) })
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.afters++
	due := c.now.Add(d)
	for len(c.events) > 0 {
		e := c.events[0]
		at := c.start.Add(e.at)
		if at.After(due) {
			break
		}
		c.events = c.events[1:]
		c.now = at
		e.do()
		if e.wakes {
			return make(chan time.Time) // never fires: ctx.Done ends the wait now
		}
	}
	c.now = due
	fired := make(chan time.Time, 1)
	fired <- due
	return fired
}

// TestWaitsForUSB: with a USB host controller, a stick that enumerates a
// moment after boot is found at the next poll, and Run then looks one more
// second for a second stick; without one, Run does not wait at all; with
// one and no stick, it waits Settle and no longer; a cancelled ctx ends the
// wait. The times are virtual (fakeClock), so they are exact.
func TestWaitsForUSB(t *testing.T) {
	tests := []struct {
		name     string
		usb      bool                     // a USB host controller is bound
		settle   time.Duration            // 0: the box's 5 s
		plug     map[time.Duration]string // virtual time -> device a stick appears on (0: present at boot)
		cancelAt time.Duration            // 0: never
		want     Outcome
		device   string
		waited   time.Duration
	}{
		// Polls at 0, 250, 500 ms find nothing; the one at 750 finds
		// the stick, then four more polls look for a second one.
		{name: "stick appears late", usb: true, settle: 3 * time.Second, plug: map[time.Duration]string{600 * time.Millisecond: "sda"},
			want: Installed, device: "sda1", waited: 750*time.Millisecond + secondLook},
		{name: "a second stick during the second look is seen", usb: true, settle: 3 * time.Second,
			plug: map[time.Duration]string{600 * time.Millisecond: "sda", 1600 * time.Millisecond: "sdb"},
			want: Rejected, device: "sda1,sdb1", waited: 750*time.Millisecond + secondLook},
		{name: "a stick after the second look is not", usb: true, settle: 3 * time.Second,
			plug: map[time.Duration]string{600 * time.Millisecond: "sda", 1800 * time.Millisecond: "sdb"},
			want: Installed, device: "sda1", waited: 750*time.Millisecond + secondLook},
		{name: "stick present at boot", usb: true, plug: map[time.Duration]string{0: "sda"},
			want: Installed, device: "sda1", waited: secondLook},
		{name: "no USB controller", plug: map[time.Duration]string{600 * time.Millisecond: "sda"}, want: NoStick},
		{name: "no USB controller, stick present at boot", plug: map[time.Duration]string{0: "sda"}, want: Installed, device: "sda1"},
		// Settle ends at the first poll at or after it.
		{name: "USB controller, no stick", usb: true, settle: 700 * time.Millisecond, want: NoStick, waited: 750 * time.Millisecond},
		{name: "USB controller, no stick, default settle", usb: true, settle: DefaultSettle, want: NoStick, waited: DefaultSettle},
		{name: "cancelled", usb: true, cancelAt: 300 * time.Millisecond, want: NoStick, waited: 300 * time.Millisecond},
		{name: "cancelled during the second look keeps the stick", usb: true, plug: map[time.Duration]string{0: "sda"}, cancelAt: 400 * time.Millisecond,
			want: Installed, device: "sda1", waited: 400 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			b.install(site(t, 1))
			if tc.usb {
				b.usbControllers()
			}
			clock := newFakeClock()
			for at, dev := range tc.plug {
				img := stickWith(t, site(t, 2))
				if at == 0 {
					b.plug(dev, img)
					continue
				}
				clock.at(at, false, func() { b.plug(dev, img) })
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelAt > 0 {
				clock.at(tc.cancelAt, true, cancel)
			}
			p := b.provisioner()
			p.Clock = clock
			if tc.settle != 0 {
				p.Settle = tc.settle
			}
			r := p.Run(ctx)

			if r.Outcome != tc.want || r.Device != tc.device {
				t.Fatalf("got %v device %q (errors %q), want %v device %q", r.Outcome, r.Device, r.Errors, tc.want, tc.device)
			}
			if w := time.Duration(r.Waited); w != tc.waited {
				t.Errorf("waited %v, want %v", w, tc.waited)
			}
			if !r.At.Equal(clock.start.Add(tc.waited)) {
				t.Errorf("at %v, want the clock's %v", r.At, clock.start.Add(tc.waited))
			}
			if !tc.usb && clock.afters != 0 {
				t.Errorf("waited %d times with no USB controller, want none", clock.afters)
			}
		})
	}
}

// TestResultJSON pins the status section's shape.
func TestResultJSON(t *testing.T) {
	prev := int64(3)
	r := Result{Outcome: Rejected, Device: "sda1", Serial: 4, Previous: &prev, Errors: []string{"usb sda1:/pqbranch.json: mtu: expected 1280..9000"},
		Waited: Duration(1500 * time.Millisecond), At: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"outcome":"rejected","device":"sda1","serial":4,"previous_serial":3,"errors":["usb sda1:/pqbranch.json: mtu: expected 1280..9000"],"waited":"1.5s","at":"2026-11-30T08:00:00Z"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || back.Outcome != Rejected || back.Waited != r.Waited {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"outcome":"maybe"}`), &back); err == nil {
		t.Error("an unknown outcome decoded")
	}
	// The error lists every outcome name, and each of them decodes.
	err = back.Outcome.UnmarshalText([]byte("maybe"))
	for o, name := range outcomeNames {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("unknown outcome error %v does not name %q", err, name)
		}
		var got Outcome
		if e := got.UnmarshalText([]byte(name)); e != nil || got != o {
			t.Errorf("%q decoded as %v, %v", o, got, e)
		}
	}
}

func slogTo(w *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestUSBDiskNotMarkedRemovable: a USB disk that reports removable=0 (many
// sticks, every USB SSD) counts, found by its sysfs path; an internal disk
// with the PQBRANCH label does not.
func TestUSBDiskNotMarkedRemovable(t *testing.T) {
	b := newBox(t)
	b.install(site(t, 1))
	dev := filepath.Join(b.sys, "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sdd")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dev, "removable"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(b.sys, "class/block/sdd")); err != nil {
		t.Fatal(err)
	}
	b.images["sdd"] = stickWith(t, site(t, 2))
	b.images["nvme0n1"] = stickWith(t, site(t, 3)) // internal, removable=0: never opened
	r := b.provisioner().Run(context.Background())
	if r.Outcome != Installed || r.Device != "sdd1" || r.Serial != 2 {
		t.Fatalf("got %v %s serial %d %q, want installed from sdd1", r.Outcome, r.Device, r.Serial, r.Errors)
	}
	if len(b.opened) != 1 || b.opened[0] != "sdd" {
		t.Errorf("opened %v, want only sdd", b.opened)
	}
}

// TestManyStickPartitions: a hostile stick whose GPT lists one PQBRANCH
// volume holding a config of MaxConfigSize 128 times is refused as
// ambiguous without the box reading (and holding) 128 configs.
func TestManyStickPartitions(t *testing.T) {
	vol, err := os.ReadFile(image(t, stickSpec{layout: Superfloppy, label: Label,
		files: map[string][]byte{FileName: bytes.Repeat([]byte(" "), MaxConfigSize)}}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 128
	all := make([]int, n)
	for i := range all {
		all[i] = i + 1
	}
	disk := behindGPT(vol, n, all...)
	img := filepath.Join(t.TempDir(), "hostile.img")
	if err := os.WriteFile(img, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBox(t)
	b.plug("sdb", img)
	p := b.provisioner()
	p.defaults()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sticks := p.scan()
	runtime.ReadMemStats(&after)
	if len(sticks) != n {
		t.Fatalf("%d sticks, want %d", len(sticks), n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*MaxConfigSize {
		t.Errorf("scanning allocated %d MiB, want at most 16 (one config, not %d)", alloc>>20, n)
	}
	if r := p.decide(sticks); r.Outcome != Rejected || !strings.Contains(r.Errors[0], "128 volumes labelled PQBRANCH") {
		t.Errorf("got %v %q, want rejected as ambiguous", r.Outcome, r.Errors)
	}
}
