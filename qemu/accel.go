package qemu

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"time"
)

// DetectAccel returns "kvm" when KVM actually runs the firmware here, else
// "tcg". An openable /dev/kvm is not enough: on some hosts KVM accepts the VM
// and then fails on OVMF's first instructions or never runs it at all. So
// OVMF itself must reach its boot manager within seconds. PQB_ACCEL
// overrides the probe.
func DetectAccel(ctx context.Context) string {
	if a := os.Getenv("PQB_ACCEL"); a != "" {
		return a
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	if probe(ctx, "kvm", 10*time.Second) {
		return "kvm"
	}
	return "tcg"
}

// probe reports whether OVMF, booted with no disk under accel, prints its
// boot manager's first line within limit.
func probe(ctx context.Context, accel string, limit time.Duration) bool {
	fw, err := FindOVMF()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", accel,
		"-nodefaults", "-display", "none", "-serial", "stdio", "-snapshot",
		"-drive", "if=pflash,format=raw,readonly=on,file="+fw.Code,
		"-drive", "if=pflash,format=raw,file="+fw.Vars)
	stdout, err := cmd.StdoutPipe()
	if err != nil || cmd.Start() != nil {
		return false
	}
	printed := make(chan bool, 1)
	go func() {
		var seen bytes.Buffer
		_, err := io.Copy(writerFunc(func(b []byte) (int, error) {
			seen.Write(b)
			if bytes.Contains(seen.Bytes(), []byte("BdsDxe")) {
				printed <- true
				return 0, io.EOF
			}
			return len(b), nil
		}), stdout)
		if err == nil {
			printed <- false
		}
	}()
	ok := false
	select {
	case ok = <-printed:
	case <-ctx.Done():
	}
	cancel()
	cmd.Wait()
	return ok
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
