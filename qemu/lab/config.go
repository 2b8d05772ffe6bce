package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"time"
)

// configWait bounds the download and reload of a config on the box.
const configWait = 3 * time.Minute

// WriteConfig replaces the appliance's config on /data with cfg and has
// init apply it (the reload command). The dev console's line editor
// redraws the whole line for every character typed, which makes typing a
// whole config take minutes; so the LAN client serves cfg over HTTP and
// the console only types a short wget command. It returns once the shell
// has run it; the caller waits for the effect.
func (l *Lab) WriteConfig(ctx context.Context, cfg []byte) error {
	var ln net.Listener
	if err := l.LAN.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(ClientAddr, "0"))
		return err
	}); err != nil {
		return fmt.Errorf("lab: config: serve from the LAN: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(cfg)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	// The shell computes the markers, so the echoed command line cannot
	// match them. A marker may follow the line editor's closing escape
	// sequence on the same console line: it is looked for anywhere.
	n := rand.IntN(1 << 20)
	cmd := fmt.Sprintf("wget -O /data/pqbranch.json http://%v/ && reload && echo ok-$((%d+1)) || echo failed-$((%d+1))", ln.Addr(), n, n)
	mark := l.VM.Mark()
	if err := l.Command(ctx, cmd); err != nil {
		return fmt.Errorf("lab: config: %w", err)
	}
	done := regexp.MustCompile(fmt.Sprintf(`(ok|failed)-%d\b`, n+1))
	wctx, cancel := context.WithTimeout(ctx, configWait)
	defer cancel()
	line, err := l.VM.WaitLineAfter(wctx, mark, done)
	switch {
	case err != nil:
		return fmt.Errorf("lab: config: the console shell did not confirm the download: %w; the console since:\n%s",
			err, consoleSince(l.VM, mark))
	case done.FindStringSubmatch(line)[1] == "failed":
		return fmt.Errorf("lab: config: the download or the reload failed on the box (console: %q)", line)
	}
	return nil
}

// RoutedConfig turns a board default config into one without the tunnel
// and with internet breakout, so that the LAN reaches the data centre
// routed (masqueraded) over the WAN in clear: the baseline path for the
// tunnel's throughput.
func RoutedConfig(def []byte) ([]byte, error) {
	var c map[string]any
	if err := json.Unmarshal(def, &c); err != nil {
		return nil, fmt.Errorf("lab: routed config: %w", err)
	}
	fw, ok := c["firewall"].(map[string]any)
	if !ok {
		return nil, errors.New("lab: routed config: the default config has no firewall section")
	}
	fw["internet_breakout"] = true
	delete(c, "tunnel")
	return json.Marshal(c)
}
