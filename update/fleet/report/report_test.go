package report

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func randomReport(r *mrand.Rand) Report {
	str := func() string {
		b := make([]byte, 1+r.IntN(20))
		for i := range b {
			b[i] = byte(' ' + r.IntN(95))
		}
		return string(b)
	}
	start := time.Unix(r.Int64N(1<<32), r.Int64N(1e9)).UTC()
	return Report{Device: str(), Seq: 1 + r.Uint64N(1<<62), Board: str(), From: str(), To: str(),
		Outcome: Outcome(1 + r.IntN(3)), Reason: str(), Running: str(), Started: start,
		Finished: start.Add(time.Duration(r.Int64N(1 << 40))), DownloadMS: r.Int64N(1 << 30), InstallMS: r.Int64N(1 << 30), TrialMS: r.Int64N(1 << 30)}
}

func TestRoundTrip(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 200 {
		want := randomReport(r)
		data, err := Sign(want, key)
		if err != nil {
			t.Fatal(err)
		}
		got, env, err := Parse(data)
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		if err := env.Verify(got.Device, pub); err != nil {
			t.Fatal(err)
		}
		for n := range len(data) {
			if _, _, err := Parse(data[:n]); err == nil {
				t.Fatalf("truncated to %d of %d bytes: accepted", n, len(data))
			}
		}
	}
}

// TestForged: a report signed by another key, or altered after signing, is
// rejected with ErrSignature.
func TestForged(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	rep := Report{Device: "dev-1", Seq: 7, To: "2.0", From: "1.0", Running: "2.0", Outcome: Committed}
	forged, _ := Sign(rep, other)
	_, env, err := Parse(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Verify("dev-1", pub); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "device dev-1") {
		t.Errorf("report signed by another key: %v", err)
	}
	good, _ := Sign(Report{Device: "dev-1", Seq: 7, To: "2.0", Outcome: RolledBack, Reason: "tunnel down"}, key)
	altered := strings.Replace(string(good), `"rolled-back"`, `"committed"`, 1)
	// The report is base64-free JSON inside the envelope, so the edit lands.
	if altered == string(good) {
		t.Fatal("test did not alter the report")
	}
	_, env, err = Parse([]byte(altered))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Verify("dev-1", pub); !errors.Is(err, ErrSignature) {
		t.Errorf("altered report: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ok := Report{Device: "d", Seq: 1, To: "2", Outcome: Committed}
	for _, tc := range []struct {
		name string
		data func() []byte
		want string
	}{
		{"unknown field", func() []byte {
			b, _ := Sign(ok, key)
			var m map[string]any
			json.Unmarshal(b, &m)
			m["extra"] = 1
			b, _ = json.Marshal(m)
			return b
		}, "unknown field"},
		{"short sig", func() []byte { return []byte(`{"report":{},"sig":"AAAA"}`) }, `"sig": is 3 bytes`},
		{"no seq", func() []byte {
			b, _ := json.Marshal(Envelope{Report: []byte(`{"device":"d","to":"2","outcome":"committed"}`), Sig: make([]byte, 64)})
			return b
		}, `"seq": is 0`},
		{"bad outcome", func() []byte {
			b, _ := json.Marshal(Envelope{Report: []byte(`{"device":"d","seq":1,"to":"2","outcome":"fine"}`), Sig: make([]byte, 64)})
			return b
		}, "expected committed, rolled-back or failed"},
		{"too big", func() []byte { return make([]byte, MaxSize+1) }, "at most"},
	} {
		_, _, err := Parse(tc.data())
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want ErrFormat saying %q", tc.name, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for i := range 3 {
		b, _ := Sign(randomReport(mrand.New(mrand.NewPCG(uint64(i), 9))), key)
		f.Add(b)
	}
	f.Add([]byte(`{"report":{"device":"d"},"sig":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, env, err := Parse(data)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid report: %v", err)
		}
		if len(env.Sig) != ed25519.SignatureSize {
			t.Fatal(fmt.Sprint("Parse accepted a signature of ", len(env.Sig), " bytes"))
		}
	})
}
