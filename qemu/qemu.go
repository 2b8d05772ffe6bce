// Package qemu boots pqbranch disk images under QEMU with OVMF, for `make
// run` and for the tests. Each VM boots a copy-on-write overlay of the image
// and its own copy of the UEFI variable store, starting from an empty NVRAM
// like a freshly flashed box, and leaves the image untouched.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pqbranch/pqbranch/boards"
)

// Config describes one VM.
type Config struct {
	Board *boards.Board
	// Image is the raw disk image to boot.
	Image string
	// NICs are attached in order, so NICs[0] is the board's first NIC.
	// A nil entry leaves that NIC unplugged (no backend).
	NICs []*os.File
	// Console receives everything the guest prints, as it arrives.
	Console io.Writer
	// Stdin, when set, is the console's input (make run's terminal).
	Stdin *os.File
	// NoReboot turns a guest reset into QEMU exiting.
	NoReboot bool
	// StateDir, when set, holds the VM's disk overlay and UEFI variable
	// store across Starts: the first Start creates them, later ones boot
	// the same disk and NVRAM, so stopping and starting again is a power
	// cycle of one box rather than a fresh one. The caller owns the
	// directory; Stop leaves it. Empty: a fresh temporary state per VM.
	StateDir string
	// USBStick, when set, is a raw disk image plugged in as a removable
	// USB mass-storage device on an xHCI controller: a provisioning stick.
	// QEMU writes to the file, as a box would to a real stick.
	USBStick string
}

// VM is a running QEMU.
type VM struct {
	cmd   *exec.Cmd
	dir   string
	keep  bool // dir is the caller's Config.StateDir
	input io.WriteCloser

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
	exited  chan struct{}
	waitErr error
	Accel   string
	Started time.Time
}

// Start boots the VM. The caller must Stop it.
func Start(ctx context.Context, c Config) (*VM, error) {
	if c.Board == nil || c.Board.QEMU == nil {
		return nil, errors.New("qemu: board has no qemu section; it is not a VM board")
	}
	fw, err := FindOVMF()
	if err != nil {
		return nil, err
	}
	dir, err := stateDir(c.StateDir)
	if err != nil {
		return nil, err
	}
	vm := &VM{dir: dir, keep: c.StateDir != "", changed: make(chan struct{}), exited: make(chan struct{}), Accel: DetectAccel(ctx)}
	fail := func(err error) (*VM, error) {
		vm.removeState()
		return nil, err
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := prepareState(ctx, fw.Vars, vars, c.Image, overlay); err != nil {
		return fail(err)
	}

	q := c.Board.QEMU
	args := []string{
		"-machine", q.Machine, "-accel", vm.Accel, "-cpu", "max", "-m", q.Memory, "-smp", "1",
		"-nodefaults", "-display", "none", "-rtc", "base=utc",
		"-drive", "if=pflash,format=raw,readonly=on,file=" + fw.Code,
		"-drive", "if=pflash,format=raw,file=" + vars,
		"-drive", "if=none,id=disk0,format=qcow2,file=" + overlay,
		"-device", q.Disk + ",drive=disk0",
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
		"-chardev", "stdio,id=con0,signal=" + onOff(c.Stdin != nil), "-serial", "chardev:con0",
	}
	if q.Watchdog != "" {
		args = append(args, "-device", q.Watchdog)
	}
	if c.NoReboot {
		args = append(args, "-no-reboot")
	}
	if c.USBStick != "" {
		args = append(args, "-device", "qemu-xhci,id=xhci",
			"-drive", "if=none,id=stick,format=raw,file="+c.USBStick,
			"-device", "usb-storage,bus=xhci.0,drive=stick,removable=on")
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	for i, tap := range c.NICs {
		mac := fmt.Sprintf("52:54:00:12:34:%02x", 0x56+i)
		if tap == nil {
			cmd.Args = append(cmd.Args, "-device", fmt.Sprintf("%s,mac=%s", q.NIC, mac))
			continue
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, tap)
		fd := 2 + len(cmd.ExtraFiles)
		cmd.Args = append(cmd.Args, "-netdev", fmt.Sprintf("tap,id=net%d,fd=%d", i, fd),
			"-device", fmt.Sprintf("%s,netdev=net%d,mac=%s", q.NIC, i, mac))
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	cmd.Stderr = cmd.Stdout
	if c.Stdin != nil {
		cmd.Stdin = c.Stdin
	} else if vm.input, err = cmd.StdinPipe(); err != nil {
		return fail(err)
	}
	vm.cmd = cmd
	vm.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("qemu: start: %w", err))
	}
	go vm.readConsole(stdout, c.Console)
	return vm, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// readConsole records console lines and tees the raw output.
func (vm *VM) readConsole(r io.Reader, tee io.Writer) {
	if tee == nil {
		tee = io.Discard
	}
	sc := bufio.NewScanner(io.TeeReader(r, tee))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		vm.mu.Lock()
		vm.lines = append(vm.lines, line)
		close(vm.changed)
		vm.changed = make(chan struct{})
		vm.mu.Unlock()
	}
	err := vm.cmd.Wait()
	vm.mu.Lock()
	vm.waitErr = err
	vm.mu.Unlock()
	close(vm.exited)
}

// WaitLine waits for a console line matching re, looking at every line
// since QEMU started, and returns it.
func (vm *VM) WaitLine(ctx context.Context, re *regexp.Regexp) (string, error) {
	return vm.WaitLineAfter(ctx, 0, re)
}

// Mark is a position in the console, for WaitLineAfter: one QEMU process
// prints every boot of the box when the guest reboots.
func (vm *VM) Mark() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return len(vm.lines)
}

// WaitLineAfter waits for a console line matching re among those printed
// after mark, and returns it.
func (vm *VM) WaitLineAfter(ctx context.Context, mark int, re *regexp.Regexp) (string, error) {
	return vm.WaitLineFunc(ctx, mark, fmt.Sprintf("a console line matching %q", re), re.MatchString)
}

// WaitLineFunc waits for a console line that ok accepts among those printed
// after mark, and returns it. what names the line in errors.
func (vm *VM) WaitLineFunc(ctx context.Context, mark int, what string, ok func(line string) bool) (string, error) {
	seen := mark
	for {
		vm.mu.Lock()
		lines, changed := vm.lines, vm.changed
		vm.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if ok(lines[seen]) {
				return lines[seen], nil
			}
		}
		select {
		case <-changed:
		case <-vm.exited:
			vm.mu.Lock()
			n := len(vm.lines)
			vm.mu.Unlock()
			if n > seen {
				continue
			}
			return "", fmt.Errorf("qemu exited (%v) before %s was printed", vm.waitErr, what)
		case <-ctx.Done():
			return "", fmt.Errorf("no %s: %w", what, ctx.Err())
		}
	}
}

// Console returns everything the guest printed so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return strings.Join(vm.lines, "\n")
}

// LinesSince returns the console lines printed after mark.
func (vm *VM) LinesSince(mark int) []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return slices.Clone(vm.lines[min(mark, len(vm.lines)):])
}

// Send types s on the console.
func (vm *VM) Send(s string) error {
	if vm.input == nil {
		return errors.New("qemu: console input belongs to the terminal")
	}
	_, err := io.WriteString(vm.input, s)
	return err
}

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Stop kills QEMU, waits for it and removes the VM's files. It is safe to
// call more than once.
func (vm *VM) Stop() error {
	select {
	case <-vm.exited:
	default:
		vm.cmd.Process.Kill()
		select {
		case <-vm.exited:
		case <-time.After(10 * time.Second):
			return errors.New("qemu: did not exit after SIGKILL")
		}
	}
	return vm.removeState()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
