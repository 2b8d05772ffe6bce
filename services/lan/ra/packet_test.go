package ra

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func randomAdvert(r *rand.Rand) *Advert {
	a := &Advert{HopLimit: uint8(r.IntN(256)), RouterLifetime: time.Duration(r.IntN(65536)) * time.Second}
	if r.IntN(2) == 0 {
		a.SourceLinkAddr = net.HardwareAddr{byte(r.IntN(256)), 2, 3, 4, 5, byte(r.IntN(256))}
	}
	if r.IntN(2) == 0 {
		a.MTU = uint32(1280 + r.IntN(8000))
	}
	for range r.IntN(3) {
		var b [16]byte
		for i := range 8 {
			b[i] = byte(r.IntN(256))
		}
		bits := 8 + r.IntN(121)
		a.Prefixes = append(a.Prefixes, Prefix{Prefix: netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked(), OnLink: r.IntN(2) == 0, Autonomous: r.IntN(2) == 0,
			Valid: time.Duration(r.Uint32()) * time.Second, Preferred: time.Duration(r.Uint32()) * time.Second})
	}
	if n := r.IntN(3); n > 0 {
		a.RDNSSLifetime = time.Duration(r.Uint32()) * time.Second
		for range n {
			var b [16]byte
			b[0], b[15] = 0xfd, byte(r.IntN(256))
			a.RDNSS = append(a.RDNSS, netip.AddrFrom16(b))
		}
	}
	return a
}

func TestAdvertRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		a := randomAdvert(r)
		b := a.Marshal()
		got, err := ParseAdvert(b)
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
		}
		// Every truncation that cuts an option (or the header) is refused.
		for n := 0; n < len(b); n++ {
			if _, err := ParseAdvert(b[:n]); err == nil && (n < 16 || !optionBoundary(b[16:], n-16)) {
				t.Fatalf("truncated to %d of %d bytes: accepted", n, len(b))
			}
		}
	}
}

// optionBoundary reports whether n bytes of options end on an option end.
func optionBoundary(opts []byte, n int) bool {
	for off := 0; ; {
		if off == n {
			return true
		}
		if off > n || off+1 >= len(opts) {
			return false
		}
		off += int(opts[off+1]) * 8
	}
}

func TestSolicitation(t *testing.T) {
	rs := []byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7}
	if !isSolicitation(rs) {
		t.Fatal("valid RS refused")
	}
	for name, b := range map[string][]byte{
		"short": rs[:7], "advert": append([]byte{134}, rs[1:]...), "code": append([]byte{133, 1}, rs[2:]...),
		"zero option": append(append([]byte{}, rs[:8]...), 1, 0, 0, 0, 0, 0, 0, 0), "cut option": rs[:12],
	} {
		if isSolicitation(b) {
			t.Errorf("%s accepted", name)
		}
	}
}

func FuzzParseAdvert(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		f.Add(randomAdvert(r).Marshal())
	}
	f.Add([]byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		isSolicitation(b)
		a, err := ParseAdvert(b)
		if err != nil {
			return
		}
		again, err := ParseAdvert(a.Marshal())
		if err != nil {
			t.Fatalf("re-marshalled advert does not parse: %v", err)
		}
		if len(again.Prefixes) != len(a.Prefixes) || len(again.RDNSS) != len(a.RDNSS) {
			t.Fatalf("re-marshal changed the advert: %+v vs %+v", again, a)
		}
	})
}
