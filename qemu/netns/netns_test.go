package netns

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

func TestVethPing(t *testing.T) {
	ctx := context.Background()
	a, err := New(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := Veth(ctx, a, "eth0", "198.18.0.1/30", b, "eth0", "198.18.0.2/30", 1280); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Run(ctx, "ping", "-c1", "-W2", "198.18.0.2"); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	out, err := b.Run(ctx, "ip", "link", "show", "eth0")
	if err != nil || !strings.Contains(out, "mtu 1280") {
		t.Fatalf("mtu not set: %v\n%s", err, out)
	}
	name := a.Name
	a.Close()
	if err := exec.Command("ip", "netns", "exec", name, "true").Run(); err == nil {
		t.Fatalf("namespace %s still exists after Close", name)
	}
}
