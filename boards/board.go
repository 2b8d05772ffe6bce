// Package boards loads and validates board files: one declarative JSON file
// per supported machine, naming its kernel, modules, NIC roles, console, disk
// and firmware type. The build never guesses about hardware; it reads it here.
package boards

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Default is the board built when none is named.
const Default = "qemu-x86_64"

//go:embed *.json
var files embed.FS

// Board is one board file.
type Board struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Arch is the Debian architecture; only amd64 is built today.
	Arch string `json:"arch"`
	// Firmware is the boot firmware type; only "uefi" is supported.
	Firmware string `json:"firmware"`
	Kernel   Kernel `json:"kernel"`
	// Modules are kernel module names (as in modules.dep, "-" or "_"
	// alike). Their dependencies are added by the build; built-in ones are
	// accepted.
	Modules []string `json:"modules"`
	// Console is the kernel console, e.g. "ttyS0,115200".
	Console string `json:"console"`
	// Cmdline is appended to the kernel command line.
	Cmdline string `json:"cmdline,omitempty"`
	Disk    Disk   `json:"disk"`
	NICs    []NIC  `json:"nics"`
	// Watchdog is the hardware watchdog's driver module, if the board has one.
	Watchdog string `json:"watchdog,omitempty"`
	// DefaultConfig is the appliance config file (beside the board file)
	// that the image carries for first boot.
	DefaultConfig string `json:"default_config,omitempty"`
	// QEMU describes how to emulate the board, for boards that are VMs.
	QEMU *QEMU `json:"qemu,omitempty"`

	// File is the path the board was read from, for error messages.
	File string `json:"-"`
}

// Kernel pins Debian's linux-image package.
type Kernel struct {
	Package string `json:"package"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// Disk is the boot disk the image is flashed to.
type Disk struct {
	// Bus is the disk's bus: virtio, nvme, ahci or any.
	Bus string `json:"bus"`
	// SizeMiB is the size of the image, and so the minimum disk size.
	SizeMiB int `json:"size_mib"`
}

// NIC maps a network interface to a role. An interface is matched by its PCI
// address when PCI is set; otherwise by Index among the board's Ethernet
// interfaces sorted by PCI address (optionally only those bound to Driver).
type NIC struct {
	Role   string `json:"role"`
	PCI    string `json:"pci,omitempty"`
	Index  *int   `json:"index,omitempty"`
	Driver string `json:"driver,omitempty"`
	Label  string `json:"label,omitempty"`
}

// QEMU is the emulated machine for a VM board.
type QEMU struct {
	Machine string `json:"machine"`
	Memory  string `json:"memory"`
	NIC     string `json:"nic"`
	Disk    string `json:"disk"`
	// Watchdog is the QEMU device emulating the board's watchdog.
	Watchdog string `json:"watchdog,omitempty"`
}

// Error is a problem with a board file, naming the file and the field.
type Error struct {
	File, Field, Problem string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Problem)
	}
	return fmt.Sprintf("%s: field %q: %s", e.File, e.Field, e.Problem)
}

// Names lists the boards that ship with pqbranch.
func Names() []string {
	entries, _ := files.ReadDir(".")
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.Contains(n, ".") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Load returns a board by name, or from a file when name contains a path
// separator or ends in .json.
func Load(name string) (*Board, error) {
	if strings.ContainsRune(name, os.PathSeparator) || strings.HasSuffix(name, ".json") {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("board: %w", err)
		}
		return Parse(name, b)
	}
	b, err := files.ReadFile(name + ".json")
	if err != nil {
		return nil, fmt.Errorf("board: unknown board %q; known boards: %s", name, strings.Join(Names(), ", "))
	}
	return Parse(filepath.Join("boards", name+".json"), b)
}

// DefaultConfig returns the board's default appliance config file contents.
func (b *Board) DefaultConfigBytes() ([]byte, error) {
	if b.DefaultConfig == "" {
		return nil, nil
	}
	if data, err := files.ReadFile(b.DefaultConfig); err == nil {
		return data, nil
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(b.File), b.DefaultConfig))
	if err != nil {
		return nil, &Error{b.File, "default_config", err.Error()}
	}
	return data, nil
}

// Parse decodes and validates a board file. file names it in errors, and
// the board's name must be the file's.
func Parse(file string, data []byte) (*Board, error) {
	b, err := decode(file, data)
	if err != nil {
		return nil, err
	}
	if want := strings.TrimSuffix(filepath.Base(file), ".json"); b.Name != want {
		return nil, &Error{file, "name", fmt.Sprintf("is %q; expected %q, the file's name", b.Name, want)}
	}
	return b, nil
}

// ParseInstalled decodes and validates the board file a build installed
// into an image (as board.json, whatever the board's name).
func ParseInstalled(file string, data []byte) (*Board, error) {
	return decode(file, data)
}

func decode(file string, data []byte) (*Board, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Board
	if err := dec.Decode(&b); err != nil {
		return nil, decodeError(file, data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Problem: "trailing data after the board object"}
	}
	b.File = file
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// decodeError turns encoding/json's errors into ones that name the field
// and what was expected.
func decodeError(file string, data []byte, err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &typeErr):
		return &Error{file, typeErr.Field, fmt.Sprintf("expected %s, got JSON %s", typeErr.Type, typeErr.Value)}
	case errors.As(err, &syntaxErr):
		line := 1 + bytes.Count(data[:min(int(syntaxErr.Offset), len(data))], []byte("\n"))
		return &Error{File: file, Problem: fmt.Sprintf("line %d: %v", line, syntaxErr)}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &Error{file, strings.Trim(f, `"`), "unknown field (see boards/README.md for the format)"}
	}
	return &Error{File: file, Problem: err.Error()}
}

var (
	sha256Re  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	pkgRe     = regexp.MustCompile(`^linux-image-[0-9a-z.+-]+$`)
	pciRe     = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	moduleRe  = regexp.MustCompile(`^@?[A-Za-z0-9_-]+$`)
	consoleRe = regexp.MustCompile(`^(ttyS[0-9]+|tty[0-9]+|hvc[0-9]+)(,[0-9]+(n8)?)?$`)
)

// Validate checks every field; the error names the first bad one.
func (b *Board) Validate() error {
	bad := func(field, problem string) error { return &Error{b.File, field, problem} }
	switch {
	case b.Name == "":
		return bad("name", "missing; expected the board's name")
	case b.Arch != "amd64":
		return bad("arch", fmt.Sprintf("is %q; expected \"amd64\"", b.Arch))
	case b.Firmware != "uefi":
		return bad("firmware", fmt.Sprintf("is %q; expected \"uefi\"", b.Firmware))
	case b.Kernel == Kernel{}:
		return bad("kernel", "missing; expected {\"package\", \"version\", \"sha256\"} pinning Debian's linux-image package")
	case !pkgRe.MatchString(b.Kernel.Package):
		return bad("kernel.package", fmt.Sprintf("is %q; expected a Debian linux-image-* package name", b.Kernel.Package))
	case b.Kernel.Version == "":
		return bad("kernel.version", "missing; expected the Debian package version, e.g. 6.1.192-2")
	case !sha256Re.MatchString(b.Kernel.SHA256):
		return bad("kernel.sha256", fmt.Sprintf("is %q; expected 64 lower-case hex digits", b.Kernel.SHA256))
	case len(b.Modules) == 0:
		return bad("modules", "empty; expected the kernel modules the board needs")
	case !consoleRe.MatchString(b.Console):
		return bad("console", fmt.Sprintf("is %q; expected a kernel console such as \"ttyS0,115200\"", b.Console))
	case b.Disk.SizeMiB < 320:
		return bad("disk.size_mib", fmt.Sprintf("is %d; expected at least 320 (two 128 MiB slots and the data partition)", b.Disk.SizeMiB))
	}
	switch b.Disk.Bus {
	case "virtio", "nvme", "ahci", "any":
	default:
		return bad("disk.bus", fmt.Sprintf("is %q; expected virtio, nvme, ahci or any", b.Disk.Bus))
	}
	for i, m := range b.Modules {
		if !moduleRe.MatchString(m) {
			return bad(fmt.Sprintf("modules[%d]", i), fmt.Sprintf("is %q; expected a module name", m))
		}
	}
	if err := b.validateNICs(); err != nil {
		return err
	}
	if b.QEMU != nil && (b.QEMU.Machine == "" || b.QEMU.NIC == "" || b.QEMU.Disk == "") {
		return bad("qemu", "expected machine, nic and disk")
	}
	return nil
}

func (b *Board) validateNICs() error {
	roles := map[string]bool{}
	for i, n := range b.NICs {
		field := fmt.Sprintf("nics[%d]", i)
		switch n.Role {
		case "wan", "lan", "spare":
		default:
			return &Error{b.File, field + ".role", fmt.Sprintf("is %q; expected wan, lan or spare", n.Role)}
		}
		if n.Role != "spare" && roles[n.Role] {
			return &Error{b.File, field + ".role", fmt.Sprintf("%q is given twice", n.Role)}
		}
		roles[n.Role] = true
		switch {
		case n.PCI != "" && n.Index != nil:
			return &Error{b.File, field, "expected either pci or index, not both"}
		case n.PCI == "" && n.Index == nil:
			return &Error{b.File, field, "expected pci or index to match the interface"}
		case n.PCI != "" && !pciRe.MatchString(n.PCI):
			return &Error{b.File, field + ".pci", fmt.Sprintf("is %q; expected a PCI address like 0000:01:00.0", n.PCI)}
		case n.Index != nil && *n.Index < 0:
			return &Error{b.File, field + ".index", "expected 0 or more"}
		}
	}
	if !roles["wan"] || !roles["lan"] {
		return &Error{b.File, "nics", "expected one NIC with role wan and one with role lan"}
	}
	return nil
}

// Roles returns the role of each NIC, for the appliance's network service.
func (b *Board) Roles() map[string]NIC {
	m := make(map[string]NIC, len(b.NICs))
	for _, n := range b.NICs {
		if n.Role != "spare" {
			m[n.Role] = n
		}
	}
	return m
}
