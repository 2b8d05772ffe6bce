package keys

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

// The RFC 4231 test case 2 HMAC values anchor the PRF itself.
func TestPRFRFC4231(t *testing.T) {
	tests := []struct {
		id   uint16
		want string
	}{
		{message.PRF_HMAC_SHA2_256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{message.PRF_HMAC_SHA2_384, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{message.PRF_HMAC_SHA2_512, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	}
	for _, tt := range tests {
		p, err := PRFByID(tt.id)
		if err != nil {
			t.Fatal(err)
		}
		// Split data across arguments: Sum must concatenate.
		got := hex.EncodeToString(p.Sum([]byte("Jefe"), []byte("what do ya want "), []byte("for nothing?")))
		if got != tt.want {
			t.Errorf("%s: got %s, want %s", p.Name, got, tt.want)
		}
	}
	if _, err := PRFByID(2); err == nil { // HMAC-SHA1 is not offered
		t.Error("PRFByID accepted HMAC-SHA1")
	}
}

// loadVectors reads testdata/vectors.txt, produced by the independent Python
// implementation in testdata/gen_vectors.py.
func loadVectors(t *testing.T) map[string][]byte {
	t.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := map[string][]byte{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, hx, ok := strings.Cut(s.Text(), " ")
		if !ok {
			continue
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v[name] = b
	}
	if len(v) < 40 {
		t.Fatalf("only %d vectors loaded", len(v))
	}
	return v
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestKeyScheduleKAT(t *testing.T) {
	v := loadVectors(t)
	check := func(name string, got []byte) {
		t.Helper()
		want, ok := v[name]
		if !ok {
			t.Fatalf("no vector %s", name)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", name, got, want)
		}
	}
	p256, _ := PRFByID(message.PRF_HMAC_SHA2_256)
	check("prfplus_sha256", p256.Plus(seq(32), bytes.Repeat([]byte("seed"), 10), 100))

	ni, nr, g0, g1 := rep(0x11, 32), rep(0x22, 32), rep(0x33, 32), rep(0x44, 32)
	const spii, spir = 0x0102030405060708, 0x1112131415161718
	l := Lengths{Enc: 36}
	for _, id := range []uint16{message.PRF_HMAC_SHA2_256, message.PRF_HMAC_SHA2_384, message.PRF_HMAC_SHA2_512} {
		p, _ := PRFByID(id)
		h := strings.TrimPrefix(p.Name, "prf")
		t.Run(h, func(t *testing.T) {
			seed0 := SKEYSEED(p, ni, nr, g0)
			check(h+"_skeyseed0", seed0)
			k0 := Derive(p, seed0, ni, nr, spii, spir, l)
			check(h+"_skd0", k0.D)
			check(h+"_skei0", k0.Ei)
			check(h+"_sker0", k0.Er)
			check(h+"_skpi0", k0.Pi)
			check(h+"_skpr0", k0.Pr)
			if len(k0.Ai) != 0 || len(k0.Ar) != 0 {
				t.Error("AEAD suite got integrity keys")
			}
			seed1 := SKEYSEEDNext(p, k0.D, g1, ni, nr)
			check(h+"_skeyseed1", seed1)
			k1 := Derive(p, seed1, ni, nr, spii, spir, l)
			check(h+"_skd1", k1.D)
			check(h+"_skpi1", k1.Pi)

			plain := append([]byte{0, 0, 0, 8, 0, 36, 0, 0}, rep(0x99, 4)...)
			hdr := message.Header{SPIi: spii, SPIr: spir, Exchange: message.IKE_INTERMEDIATE, Flags: message.FlagInitiator, MessageID: 1}
			in := IntAuthInput(hdr, message.PayloadKE, plain)
			i1 := IntAuth(p, k0.Pi, nil, in)
			check(h+"_intauth_i1", i1)
			check(h+"_intauth_i2", IntAuth(p, k1.Pi, i1, in))

			idBody := append([]byte{message.ID_FQDN, 0, 0, 0}, "branch.example"...)
			suffix := IntAuthSuffix(i1, rep(0x55, p.Size()), 2)
			octets := SignedOctets(p, rep(0xaa, 100), nr, k0.Pi, idBody, suffix)
			check(h+"_pskauth", PSKAuth(p, []byte("0123456789abcdef"), octets))

			check(h+"_keymat_ke", ChildKeymat(p, k0.D, [][]byte{g0, g1}, ni, nr, 72))
			check(h+"_keymat_noke", ChildKeymat(p, k0.D, nil, ni, nr, 72))
			check(h+"_skeyseed_rekey", SKEYSEEDRekey(p, k0.D, [][]byte{g0, g1}, ni, nr))
		})
	}
}

// TestIntAuthInputLayout checks the rewritten lengths field by field.
func TestIntAuthInputLayout(t *testing.T) {
	h := message.Header{SPIi: 1, SPIr: 2, NextPayload: message.PayloadSKF, Exchange: message.IKE_INTERMEDIATE, MessageID: 3, Length: 1300}
	in := IntAuthInput(h, message.PayloadKE, make([]byte, 100))
	if got := binary.BigEndian.Uint32(in[24:]); got != 28+4+100 {
		t.Errorf("header length %d", got)
	}
	if in[16] != byte(message.PayloadSK) {
		t.Errorf("header next payload %d, want SK even for a fragmented message", in[16])
	}
	if in[28] != byte(message.PayloadKE) || binary.BigEndian.Uint16(in[30:]) != 104 {
		t.Errorf("SK header %x", in[28:32])
	}
	if len(in) != 132 {
		t.Errorf("len %d", len(in))
	}
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}
