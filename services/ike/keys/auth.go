package keys

import (
	"encoding/binary"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// IntAuthInput is A | P of RFC 9242 3.3.2 for an IKE_INTERMEDIATE message:
// its header and SK payload header with the lengths rewritten as if the
// Encrypted payload held only the plaintext, then the plaintext. It is built
// from the reassembled message, so fragmentation does not change it.
func IntAuthInput(h message.Header, inner message.PayloadType, plain []byte) []byte {
	h.NextPayload = message.PayloadSK
	h.Length = uint32(message.HeaderLen + message.GenericHeaderLen + len(plain))
	b := h.Marshal(make([]byte, 0, int(h.Length)))
	b = append(b, byte(inner), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(message.GenericHeaderLen+len(plain)))
	return append(b, plain...)
}

// IntAuth is one link of the chain: prf(SK_p, IntAuth(n-1) | A | P), where
// SK_p is the key that protected the IKE_INTERMEDIATE message and prev is
// nil for the first link.
func IntAuth(p PRF, skp, prev, input []byte) []byte {
	return p.Sum(skp, prev, input)
}

// SignedOctets is what the AUTH payload covers (RFC 7296 2.15, RFC 9242 3.3.2):
// RealMessage | Nonce(peer) | prf(SK_p, ID body) [| IntAuth_i | IntAuth_r | MID].
// intAuth is nil when no IKE_INTERMEDIATE exchange took place.
func SignedOctets(p PRF, realMessage, peerNonce, skp, idBody, intAuth []byte) []byte {
	out := append(append([]byte(nil), realMessage...), peerNonce...)
	out = append(out, p.Sum(skp, idBody)...)
	return append(out, intAuth...)
}

// IntAuthSuffix is IntAuth_iN | IntAuth_rN | IKE_AUTH message ID.
func IntAuthSuffix(intI, intR []byte, authMID uint32) []byte {
	b := append(append([]byte(nil), intI...), intR...)
	return binary.BigEndian.AppendUint32(b, authMID)
}

// PSKAuth is prf(prf(Shared Secret, "Key Pad for IKEv2"), signed octets).
func PSKAuth(p PRF, psk, octets []byte) []byte {
	return p.Sum(p.Sum(psk, []byte("Key Pad for IKEv2")), octets)
}
