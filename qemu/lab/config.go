package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
)

// WriteConfig replaces the appliance's config on /data with cfg and has
// init apply it (the reload command), typing on the dev console's shell.
// It returns once the shell has run both; the caller waits for the effect.
func (l *Lab) WriteConfig(ctx context.Context, cfg []byte) error {
	var compact bytes.Buffer
	if err := json.Compact(&compact, cfg); err != nil {
		return fmt.Errorf("lab: config: %w", err)
	}
	if bytes.ContainsAny(compact.Bytes(), "'\r\n") {
		return errors.New("lab: config: a quote or line break would end the shell's single-quoted string")
	}
	// The shell computes the done marker, so the echoed command line
	// cannot match it.
	n := rand.IntN(1 << 20)
	cmd := fmt.Sprintf("echo '%s' > /data/pqbranch.json && reload && echo lab-config-$((%d+1))\r", compact.Bytes(), n)
	if err := l.VM.Send(cmd); err != nil {
		return fmt.Errorf("lab: config: %w", err)
	}
	if _, err := l.VM.WaitLine(ctx, regexp.MustCompile(fmt.Sprintf(`lab-config-%d\b`, n+1))); err != nil {
		return fmt.Errorf("lab: config: the console shell did not confirm the write: %w", err)
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
