package efiboot

import (
	"fmt"
	"strconv"
	"strings"
)

// GlobalGUID is EFI_GLOBAL_VARIABLE, the vendor GUID of Boot####,
// BootOrder, BootNext and BootCurrent.
const GlobalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// Variable attributes (UEFI 2.10, GetVariable).
const (
	AttrNonVolatile       = 0x00000001
	AttrBootserviceAccess = 0x00000002
	AttrRuntimeAccess     = 0x00000004
	// AttrsBoot is what every Boot#### and BootOrder variable carries:
	// stored in flash, visible to the firmware and to the OS.
	AttrsBoot = AttrNonVolatile | AttrBootserviceAccess | AttrRuntimeAccess
)

// Vars is one UEFI variable store.
type Vars interface {
	// Get returns an error wrapping os.ErrNotExist when the variable is
	// missing.
	Get(name, guid string) (attrs uint32, data []byte, err error)
	// Set creates or replaces a variable in one write.
	Set(name, guid string, attrs uint32, data []byte) error
	// Delete removes a variable; missing is an error wrapping
	// os.ErrNotExist.
	Delete(name, guid string) error
	// Names lists the variables as efivarfs names them:
	// "Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c".
	Names() ([]string, error)
}

// bootEntryName is the variable name of load option n.
func bootEntryName(n uint16) string { return fmt.Sprintf("Boot%04X", n) }

// parseBootEntryName parses "Boot####" (four hex digits, any case).
func parseBootEntryName(name string) (uint16, bool) {
	hexPart, ok := strings.CutPrefix(name, "Boot")
	if !ok || len(hexPart) != 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(hexPart, 16, 16)
	return uint16(n), err == nil
}

// splitVarName splits an efivarfs file name into name and GUID.
func splitVarName(s string) (name, guid string, ok bool) {
	if len(s) < 38 || s[len(s)-37] != '-' {
		return "", "", false
	}
	guid = s[len(s)-36:]
	if _, err := ParseGUID(guid); err != nil {
		return "", "", false
	}
	return s[:len(s)-37], strings.ToLower(guid), true
}

// checkVarName rejects names that cannot be one efivarfs file.
func checkVarName(name, guid string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("efiboot: variable name %q: expected a non-empty name without '/' or NUL", name)
	}
	if _, err := ParseGUID(guid); err != nil {
		return fmt.Errorf("efiboot: variable %s: %w", name, err)
	}
	return nil
}
