package lab

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"
)

// Temporary: poke at a running lab.
func TestZZDebug(t *testing.T) {
	if os.Getenv("PQB_DEBUG_LAB") == "" {
		t.Skip("debug only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l := startLab(ctx, t)
	if _, err := l.VM.WaitLine(ctx, regexp.MustCompile(`tunnel established`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	dump := exec(ctx, t, l.LAN.Command(ctx, "timeout", "6", "tcpdump", "-ni", "lan0", "-c", "20"))
	out, _ := l.LAN.Run(ctx, "ping", "-c", "3", "-W", "1", "198.19.0.2")
	t.Logf("ping:\n%s", out)
	t.Logf("lan tcpdump:\n%s", dump())
	out, _ = l.LAN.Run(ctx, "ping", "-c", "2", "-W", "1", "198.18.1.1")
	t.Logf("ping gw:\n%s", out)
	for _, c := range []string{"cat /proc/sys/net/ipv4/ip_forward", "cat /proc/net/xfrm_stat", "ip xfrm policy", "ip xfrm state", "ip route", "cat /proc/net/snmp", "dmesg"} {
		l.VM.Send(c + "\r")
		time.Sleep(3 * time.Second)
	}
	sas, _ := l.Edge.ListSAs(ctx)
	t.Logf("sas:\n%s", sas)
	t.Logf("console:\n%s", tail(l.VM.Console(), 150))
}

func exec(ctx context.Context, t *testing.T, cmd interface {
	CombinedOutput() ([]byte, error)
}) func() string {
	ch := make(chan string, 1)
	go func() { b, _ := cmd.CombinedOutput(); ch <- string(b) }()
	time.Sleep(time.Second)
	return func() string { return <-ch }
}
