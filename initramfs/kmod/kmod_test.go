package kmod

import (
	"strings"
	"testing"
)

const testDep = `kernel/net/ipv4/esp4.ko: kernel/net/xfrm/xfrm_algo.ko kernel/crypto/authenc.ko
kernel/net/xfrm/xfrm_algo.ko:
kernel/crypto/authenc.ko: kernel/crypto/aead-x.ko
kernel/crypto/aead-x.ko:
kernel/net/netfilter/nf_tables.ko: kernel/lib/nfnetlink.ko
kernel/lib/nfnetlink.ko:
`

func TestResolve(t *testing.T) {
	d, err := ParseDeps(strings.NewReader(testDep))
	if err != nil {
		t.Fatal(err)
	}
	builtin := map[string]bool{"virtio_pci": true}
	tests := []struct {
		names   []string
		want    string
		wantErr string
	}{
		{[]string{"esp4"}, "kernel/net/xfrm/xfrm_algo.ko kernel/crypto/aead-x.ko kernel/crypto/authenc.ko kernel/net/ipv4/esp4.ko", ""},
		{[]string{"nf-tables", "aead_x", "esp4"}, "kernel/lib/nfnetlink.ko kernel/net/netfilter/nf_tables.ko kernel/crypto/aead-x.ko kernel/net/xfrm/xfrm_algo.ko kernel/crypto/authenc.ko kernel/net/ipv4/esp4.ko", ""},
		{[]string{"virtio_pci"}, "", ""},
		{[]string{"nope"}, "", `module "nope" is neither`},
	}
	for _, tt := range tests {
		got, err := d.Resolve(tt.names, builtin)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Resolve(%v) error = %v, want %q", tt.names, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("Resolve(%v) = %v, %v; want %s", tt.names, got, err, tt.want)
		}
	}
}

func TestResolveMissingDep(t *testing.T) {
	d, err := ParseDeps(strings.NewReader("kernel/a.ko: kernel/b.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve([]string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("want missing-dependency error, got %v", err)
	}
}

func FuzzParseDeps(f *testing.F) {
	f.Add(testDep)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDeps(strings.NewReader(s))
		if err != nil {
			return
		}
		var names []string
		for m := range d.byName {
			names = append(names, m)
		}
		_, _ = d.Resolve(names, nil)
	})
}

func TestWriteKeepsCallerOrder(t *testing.T) {
	d, err := ParseDeps(strings.NewReader(testDep))
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"kernel/net/xfrm/xfrm_algo.ko", "kernel/crypto/aead-x.ko"}
	var b strings.Builder
	if err := d.Write(&b, order); err != nil {
		t.Fatal(err)
	}
	if order[0] != "kernel/net/xfrm/xfrm_algo.ko" {
		t.Fatalf("Write reordered its argument: %v", order)
	}
	if want := "kernel/crypto/aead-x.ko:\nkernel/net/xfrm/xfrm_algo.ko:\n"; b.String() != want {
		t.Fatalf("Write = %q, want %q", b.String(), want)
	}
}
