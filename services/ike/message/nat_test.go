package message

import (
	"encoding/hex"
	"net/netip"
	"testing"
)

// The expected hashes were computed apart from this code (Python's
// hashlib over the RFC 7296 §2.23 input). A v4-mapped address hashes as
// its four bytes, as the peer, which sees plain IPv4, computes it.
func TestNATDetectionHash(t *testing.T) {
	for _, tc := range []struct {
		spii, spir uint64
		ap         string
		want       string
	}{
		{0x0102030405060708, 0x1112131415161718, "198.51.100.7:4500", "09aefdcb65602faed1067c64e3e64e39122f5e3f"},
		{0x0102030405060708, 0x1112131415161718, "[::ffff:198.51.100.7]:4500", "09aefdcb65602faed1067c64e3e64e39122f5e3f"},
		{0x0102030405060708, 0, "[2001:db8::1]:500", "7fa12a60a3a27ef1b3fed26cc6d5b8fbf553292f"},
	} {
		got := hex.EncodeToString(NATDetectionHash(tc.spii, tc.spir, netip.MustParseAddrPort(tc.ap)))
		if got != tc.want {
			t.Errorf("NATDetectionHash(%x, %x, %s) = %s, want %s", tc.spii, tc.spir, tc.ap, got, tc.want)
		}
	}
}
