package ike

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// identity is an IKE identity in strongSwan's notation: an IP address,
// "@fqdn" or a bare name (FQDN), "user@domain" (RFC 822), or a DN such as
// "CN=edge, O=Example" (DER_ASN1_DN).
type identity struct {
	typ  uint8
	data []byte
	text string
}

var dnAttrs = map[string]asn1.ObjectIdentifier{
	"C": {2, 5, 4, 6}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11}, "CN": {2, 5, 4, 3},
	"L": {2, 5, 4, 7}, "ST": {2, 5, 4, 8}, "SN": {2, 5, 4, 5},
}

func parseIdentity(s string) (identity, error) {
	id := identity{text: s}
	switch {
	case s == "":
		return id, fmt.Errorf("empty identity")
	case strings.HasPrefix(s, "@"):
		id.typ, id.data = message.ID_FQDN, []byte(s[1:])
	case strings.Contains(s, "="):
		der, err := encodeDN(s)
		if err != nil {
			return id, fmt.Errorf("identity %q: %w", s, err)
		}
		id.typ, id.data = message.ID_DER_ASN1_DN, der
	case strings.Contains(s, "@"):
		id.typ, id.data = message.ID_RFC822_ADDR, []byte(s)
	default:
		if a, err := netip.ParseAddr(s); err == nil {
			id.typ, id.data = message.ID_IPV4_ADDR, a.AsSlice()
			if a.Is6() {
				id.typ = message.ID_IPV6_ADDR
			}
		} else {
			id.typ, id.data = message.ID_FQDN, []byte(s)
		}
	}
	return id, nil
}

// encodeDN turns "CN=x, O=y" into a DER RDNSequence, in the order written,
// which is how strongSwan compares DNs.
func encodeDN(s string) ([]byte, error) {
	var rdns pkix.RDNSequence
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		oid, known := dnAttrs[strings.ToUpper(strings.TrimSpace(k))]
		if !ok || !known {
			return nil, fmt.Errorf("unsupported DN component %q", part)
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: strings.TrimSpace(v)}})
	}
	return asn1.Marshal(rdns)
}

func (id identity) payload(responder bool) *message.ID {
	return &message.ID{Responder: responder, IDType: id.typ, Data: id.data}
}

func (id identity) matches(p *message.ID) bool {
	return p != nil && p.IDType == id.typ && bytes.Equal(p.Data, id.data)
}

// inCert checks that the certificate vouches for the identity.
func (id identity) inCert(c *x509.Certificate) error {
	ok := false
	switch id.typ {
	case message.ID_FQDN:
		ok = c.VerifyHostname(string(id.data)) == nil
	case message.ID_RFC822_ADDR:
		ok = slices.Contains(c.EmailAddresses, string(id.data))
	case message.ID_IPV4_ADDR, message.ID_IPV6_ADDR:
		for _, ip := range c.IPAddresses {
			ok = ok || bytes.Equal(ip.To16(), netip.AddrFrom16(to16(id.data)).AsSlice())
		}
	case message.ID_DER_ASN1_DN:
		ok = bytes.Equal(c.RawSubject, id.data)
	}
	if !ok {
		return fmt.Errorf("certificate %q does not contain identity %q", c.Subject, id.text)
	}
	return nil
}

func to16(b []byte) [16]byte {
	a, _ := netip.AddrFromSlice(b)
	return a.As16()
}
