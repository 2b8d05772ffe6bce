package appliance

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// syslogConfig is testConfig with log.syslog set to section.
func syslogConfig(section string) string {
	return strings.Replace(testConfig("1500", "8080"), `"time": {}`, `"log": {"syslog": `+section+`}, "time": {}`, 1)
}

// collected are the syslog messages a collector on the LAN host received.
type collected struct {
	mu   sync.Mutex
	msgs []string
}

func (c *collected) add(m string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
}

// find returns the first message whose APP-NAME is app and whose MSG
// starts with text.
func (c *collected) find(app, text string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [meta ...] MSG
		f := strings.SplitN(m, " ", 7)
		if len(f) < 7 {
			continue
		}
		_, msg, _ := strings.Cut(f[6], "] ")
		if f[3] == app && strings.HasPrefix(msg, text) {
			return m, nil
		}
	}
	return "", errors.New("none of " + strconv.Itoa(len(c.msgs)) + " messages is " + app + ": " + text)
}

// TestApplianceSyslog: the appliance forwards its log, boot included, to
// a collector on the LAN over TCP; a reload that moves the collector to UDP
// restarts only the syslog service, and the log follows.
func TestApplianceSyslog(t *testing.T) {
	// TCP first: the collector starts listening after the appliance, which
	// keeps its boot log queued until it can connect. (Datagrams sent
	// before a UDP collector listens are lost, as UDP goes.)
	rg := bootAppliance(t, syslogConfig(`{"server": "198.18.1.2:5515", "protocol": "tcp", "facility": "local0"}`))

	var udp, tcp collected
	var pc net.PacketConn
	var ln net.Listener
	if err := rg.lan.Do(func() (err error) {
		if pc, err = net.ListenPacket("udp4", "198.18.1.2:5514"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", "198.18.1.2:5515")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{}) // closed when the test ends
	defer wg.Wait()
	defer ln.Close()
	defer pc.Close()
	defer close(done)
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.add(string(buf[:n]))
		}
	}()
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		go func() { <-done; c.Close() }()
		br := bufio.NewReader(c)
		for {
			n, err := br.ReadString(' ')
			if err != nil {
				return
			}
			size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
			if err != nil {
				return
			}
			msg := make([]byte, size)
			if _, err := io.ReadFull(br, msg); err != nil {
				return
			}
			tcp.add(string(msg))
		}
	}()

	// The boot's first lines were queued before the LAN was up and arrive
	// once it is; per service, with the config's host name, local0.
	var boot, lan string
	eventually(t, "boot log over TCP", func() (err error) {
		if boot, err = tcp.find("pqbranch", "config loaded"); err != nil {
			return err
		}
		lan, err = tcp.find("network", "lan configured")
		return err
	})
	for _, m := range []string{boot, lan} {
		if !strings.HasPrefix(m, "<134>1 ") || strings.Fields(m)[2] != "branch-e2e" || !strings.Contains(m, `[meta sequenceId="`) {
			t.Errorf("message %q: want local0.info from branch-e2e with a sequenceId", m)
		}
	}

	rg.write(t, syslogConfig(`{"server": "198.18.1.2:5514", "protocol": "udp", "facility": "daemon", "level": "info"}`))
	rg.cmd.Process.Signal(syscall.SIGHUP)
	// Logged after the TCP sender stopped: only the UDP one can send it.
	var restarted string
	eventually(t, "the reload's log over UDP", func() (err error) {
		restarted, err = udp.find("supervise", "service restart requested service=syslog")
		return err
	})
	if !strings.HasPrefix(restarted, "<30>1 ") {
		t.Errorf("message %q: want daemon.info", restarted)
	}
	// Logged while the change was applied: by one sender or the other.
	applied, err := tcp.find("pqbranch", "applying new config")
	if err != nil {
		applied, err = udp.find("pqbranch", "applying new config")
	}
	if err != nil || !strings.Contains(applied, "restart=[syslog]") {
		t.Errorf("applying new config: %q %v, want only syslog restarted", applied, err)
	}
}
