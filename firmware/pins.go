package firmware

import "github.com/pqbranch/pqbranch/firmware/debpkg"

// stubPin is systemd's EFI stub (Debian 12's systemd-boot-efi), which turns
// kernel, initramfs and command line into one bootable UKI. It is the same
// for every board, so it is pinned here rather than in each board file.
var stubPin = debpkg.Pin{
	Package: "systemd-boot-efi",
	Version: "252.39-1~deb12u2",
	SHA256:  "8f2b81bdcfafc466882a0cae460272dbf10d8d97c6a3c1c6ea33038c155a2f5e",
	Field:   "firmware/pins.go: stubPin.SHA256",
}

const stubPath = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
