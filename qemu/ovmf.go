package qemu

import (
	"fmt"
	"os"
)

// Firmware is a pair of OVMF code and variable-store templates.
type Firmware struct{ Code, Vars string }

// ovmfPaths are where Debian's and Ubuntu's ovmf packages install the
// firmware, newest layout first.
var ovmfPaths = []Firmware{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// FindOVMF returns the installed OVMF firmware (without Secure Boot keys).
func FindOVMF() (Firmware, error) {
	for _, f := range ovmfPaths {
		if _, err := os.Stat(f.Code); err != nil {
			continue
		}
		if _, err := os.Stat(f.Vars); err == nil {
			return f, nil
		}
	}
	return Firmware{}, fmt.Errorf("qemu: OVMF not found in /usr/share/OVMF; install it with: apt-get install -y ovmf")
}
