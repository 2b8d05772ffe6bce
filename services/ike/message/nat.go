package message

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
)

// NATDetectionHash is the data of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notify (RFC 7296 §2.23): SHA-1 of the SPIs,
// the address and the port. Both ends compute it, so it lives with the
// message format rather than with either end.
func NATDetectionHash(spii, spir uint64, ap netip.AddrPort) []byte {
	b := binary.BigEndian.AppendUint64(nil, spii)
	b = binary.BigEndian.AppendUint64(b, spir)
	b = append(b, ap.Addr().Unmap().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	h := sha1.Sum(b)
	return h[:]
}
