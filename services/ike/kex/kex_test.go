package kex

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/pqbranch/pqbranch/services/ike/message"
)

func TestAgreement(t *testing.T) {
	tests := []struct {
		method          uint16
		pubLen, respLen int
	}{
		{message.KE_X25519, 32, 32},
		{message.KE_ECP256, 64, 64},
		{message.KE_ECP384, 96, 96},
		{message.KE_MLKEM512, 800, 768},
		{message.KE_MLKEM768, 1184, 1088},
		{message.KE_MLKEM1024, 1568, 1568},
	}
	for _, tt := range tests {
		t.Run(Name(tt.method), func(t *testing.T) {
			ini, err := NewInitiator(tt.method, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(ini.Public()) != tt.pubLen {
				t.Fatalf("public is %d bytes, want %d", len(ini.Public()), tt.pubLen)
			}
			resp, shared, err := Respond(tt.method, ini.Public(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp) != tt.respLen {
				t.Fatalf("response is %d bytes, want %d", len(resp), tt.respLen)
			}
			got, err := ini.Complete(resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, shared) {
				t.Fatal("shared secrets differ")
			}
			if _, err := ini.Complete(resp[:len(resp)-1]); !errors.Is(err, ErrPeerData) {
				t.Fatalf("short peer data: err = %v, want ErrPeerData", err)
			}
		})
	}
}

// An ML-KEM ciphertext that is well-sized but altered must not yield the
// encapsulated secret (implicit rejection), so the handshake cannot succeed.
func TestMLKEMTamperedCiphertext(t *testing.T) {
	ini, _ := NewInitiator(message.KE_MLKEM768, rand.Reader)
	ct, shared, err := Respond(message.KE_MLKEM768, ini.Public(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ct[10] ^= 1
	got, err := ini.Complete(ct)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, shared) {
		t.Fatal("tampered ciphertext gave the real secret")
	}
}

func TestRejectsBadPoints(t *testing.T) {
	ini, _ := NewInitiator(message.KE_X25519, rand.Reader)
	if _, err := ini.Complete(make([]byte, 32)); !errors.Is(err, ErrPeerData) {
		t.Errorf("X25519 all-zero point: err = %v", err)
	}
	p, _ := NewInitiator(message.KE_ECP256, rand.Reader)
	if _, err := p.Complete(bytes.Repeat([]byte{1}, 64)); !errors.Is(err, ErrPeerData) {
		t.Errorf("P-256 off-curve point: err = %v", err)
	}
	// An encapsulation key with coefficients >= q fails the modulus check.
	if _, _, err := Respond(message.KE_MLKEM768, bytes.Repeat([]byte{0xff}, 1184), rand.Reader); !errors.Is(err, ErrPeerData) {
		t.Errorf("ML-KEM bad encapsulation key: err = %v", err)
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"x25519", "ecp256", "ecp384", "mlkem512", "mlkem768", "mlkem1024"} {
		id, err := ByName(n)
		if err != nil || Name(id) != n {
			t.Errorf("%s: ByName = %d, %v", n, id, err)
		}
	}
	if _, err := ByName("none"); err == nil {
		t.Error("ByName(none) accepted")
	}
	if IsPostQuantum(message.KE_X25519) || !IsPostQuantum(message.KE_MLKEM512) {
		t.Error("IsPostQuantum wrong")
	}
}
