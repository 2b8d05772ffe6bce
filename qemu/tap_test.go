package qemu

import (
	"context"
	"strings"
	"testing"

	"github.com/pqbranch/pqbranch/qemu/netns"
)

func TestTapInNamespace(t *testing.T) {
	ctx := context.Background()
	ns, err := netns.New(ctx, "tap")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	f, err := Tap(ns, "wan0")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ns.Run(ctx, "ip", "-o", "link", "show", "wan0")
	if err != nil || !strings.Contains(out, "wan0") {
		t.Fatalf("tap not in namespace: %v %s", err, out)
	}
	f.Close()
	if out, err := ns.Run(ctx, "ip", "-o", "link", "show", "wan0"); err == nil {
		t.Fatalf("tap survived closing its queue: %s", out)
	}
}
