package message

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"reflect"
	"testing"
)

func sampleMessage() *Message {
	return &Message{
		Header: Header{SPIi: 0x0102030405060708, Exchange: IKE_SA_INIT, Flags: FlagInitiator},
		Payloads: []Payload{
			&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLength: 256},
				{Type: TransformPRF, ID: PRF_HMAC_SHA2_384},
				{Type: TransformKE, ID: KE_X25519},
				{Type: TransformADDKE1, ID: KE_MLKEM768},
			}}}},
			&KE{Group: KE_X25519, Data: bytes.Repeat([]byte{7}, 32)},
			&Nonce{Data: bytes.Repeat([]byte{9}, 32)},
			&Notify{NotifyType: NAT_DETECTION_SOURCE_IP, Data: bytes.Repeat([]byte{1}, 20)},
			&Notify{NotifyType: INTERMEDIATE_EXCHANGE_SUPPORTED},
		},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	m := sampleMessage()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if int(m.Length) != len(b) || m.NextPayload != PayloadSA {
		t.Fatalf("header not filled: %+v", m.Header)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
	}
}

// TestKnownEncoding pins the wire layout of a small message against bytes
// written out by hand from RFC 7296 section 3.
func TestKnownEncoding(t *testing.T) {
	m := &Message{
		Header: Header{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, Flags: FlagInitiator, MessageID: 5},
		Payloads: []Payload{
			&Notify{Protocol: ProtoESP, SPI: []byte{0xaa, 0xbb, 0xcc, 0xdd}, NotifyType: REKEY_SA},
			&Delete{Protocol: ProtoESP, SPIs: [][]byte{{1, 2, 3, 4}}},
		},
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "0000000000000001" + "0000000000000002" + "29" + "20" + "25" + "08" + "00000005" + "00000034" + // 28 + 12 + 12 bytes
		"2a00000c" + "0304" + "4009" + "aabbccdd" + // N(REKEY_SA), next D
		"0000000c" + "0304" + "0001" + "01020304" // D(ESP, 1 SPI)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
}

func TestPayloadRoundTrips(t *testing.T) {
	tests := []Payload{
		&SA{Proposals: []Proposal{
			{Num: 1, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLength: 256}, {Type: TransformESN, ID: ESN_NONE}}},
			{Num: 2, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 5}, Transforms: []Transform{{Type: TransformENCR, ID: ENCR_AES_GCM_16, KeyLength: 128}}},
		}},
		&KE{Group: KE_MLKEM1024, Data: make([]byte, 1568)},
		&ID{IDType: ID_FQDN, Data: []byte("branch.example")},
		&ID{Responder: true, IDType: ID_IPV4_ADDR, Data: []byte{192, 0, 2, 1}},
		&Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0x03, 1, 2, 3}},
		&CertReq{Encoding: CertX509Signature, Data: make([]byte, 20)},
		&Auth{Method: AuthSharedKey, Data: make([]byte, 48)},
		&Nonce{Data: make([]byte, 32)},
		&Notify{NotifyType: COOKIE, Data: []byte("cookie")},
		&Delete{Protocol: ProtoIKE},
		&Delete{Protocol: ProtoESP, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}},
		&VendorID{Data: []byte("pqbranch")},
		&TS{Selectors: []Selector{
			SelectorFromPrefix(netip.MustParsePrefix("198.18.0.0/24")),
			SelectorFromPrefix(netip.MustParsePrefix("2001:db8::/32")),
		}},
		&TS{Responder: true, Selectors: []Selector{SelectorFromPrefix(netip.MustParsePrefix("198.19.0.0/16"))}},
		&EncryptedFragment{Inner: PayloadIDi, Number: 1, Total: 3, Body: make([]byte, 40)},
		&Encrypted{Inner: PayloadKE, Body: make([]byte, 40)},
		&Unknown{T: 200, Data: []byte("x")},
	}
	for _, p := range tests {
		t.Run(p.Type().String(), func(t *testing.T) {
			first, b, err := MarshalPayloads(nil, []Payload{p})
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParsePayloads(first, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], p) {
				t.Fatalf("got %#v, want %#v", got, p)
			}
		})
	}
}

func TestSelectorPrefix(t *testing.T) {
	for _, s := range []string{"198.18.0.0/24", "198.19.0.0/16", "192.0.2.7/32", "0.0.0.0/0", "2001:db8::/48"} {
		p := netip.MustParsePrefix(s)
		sel := SelectorFromPrefix(p)
		got, ok := sel.Prefix()
		if !ok || got != p {
			t.Errorf("%s: Prefix() = %v %v", s, got, ok)
		}
	}
	if sel := SelectorFromPrefix(netip.MustParsePrefix("198.18.0.0/24")); sel.End != netip.MustParseAddr("198.18.0.255") {
		t.Errorf("end = %v", sel.End)
	}
	odd := Selector{Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.0.0.5")}
	if _, ok := odd.Prefix(); ok {
		t.Error("range 10.0.0.1-5 reported as a prefix")
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := sampleMessage().Marshal()
	critical := append([]byte(nil), good[:HeaderLen]...)
	critical[16] = 250 // unknown first payload
	critical = append(critical, 0, 0x80, 0, 4)
	SetLength(critical, len(critical))
	tests := map[string][]byte{
		"empty":          nil,
		"short header":   good[:20],
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
		"bad version":    func() []byte { b := append([]byte(nil), good...); b[17] = 0x10; return b }(),
		"payload length": func() []byte { b := append([]byte(nil), good...); b[HeaderLen+3] = 2; return b }(),
		"critical":       critical,
	}
	for name, b := range tests {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	good, _ := sampleMessage().Marshal()
	f.Add(good[:HeaderLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if got := h.Marshal(nil); !bytes.Equal(got, b[:HeaderLen]) {
			t.Fatalf("header re-encodes differently: %x vs %x", got, b[:HeaderLen])
		}
	})
}

func FuzzParse(f *testing.F) {
	good, _ := sampleMessage().Marshal()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := m.Marshal()
		if err != nil {
			return // e.g. an Unknown payload grown beyond 64 KiB cannot happen here, but be safe
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip differs:\n%#v\n%#v", m, m2)
		}
	})
}

// FuzzPayload drives each payload decoder directly with an arbitrary body.
func FuzzPayload(f *testing.F) {
	for _, p := range []Payload{&SA{}, &KE{}, &TS{}, &Delete{}, &Notify{}, &EncryptedFragment{}} {
		f.Add(byte(p.Type()), []byte{0, 0, 0, 0, 1, 2, 3, 4})
	}
	seed, _ := sampleMessage().Marshal()
	f.Add(byte(PayloadSA), seed[HeaderLen+4:HeaderLen+4+52])
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		p := newPayload(PayloadType(typ), false)
		if err := p.unmarshal(body); err != nil {
			return
		}
		q := newPayload(PayloadType(typ), false)
		if err := q.unmarshal(p.marshal(nil)); err != nil {
			t.Fatalf("%v: re-encoded body does not parse: %v", p.Type(), err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("%v: round trip differs:\n%#v\n%#v", p.Type(), p, q)
		}
	})
}

// Logs and refusals name notify types instead of printing numbers.
func TestNotifyNames(t *testing.T) {
	for _, tt := range []struct {
		n    NotifyType
		want string
	}{
		{NO_PROPOSAL_CHOSEN, "NO_PROPOSAL_CHOSEN"},
		{16418, "CHILDLESS_IKEV2_SUPPORTED"},
		{16404, "MULTIPLE_AUTH_SUPPORTED"},
		{16396, "MOBIKE_SUPPORTED"},
		{16441, "ADDITIONAL_KEY_EXCHANGE"},
		{1000, "UNKNOWN_ERROR(1000)"},
		{40000, "UNKNOWN_STATUS(40000)"},
	} {
		if got := tt.n.String(); got != tt.want {
			t.Errorf("NotifyType(%d).String() = %q, want %q", uint16(tt.n), got, tt.want)
		}
	}
}
