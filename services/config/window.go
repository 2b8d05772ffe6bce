package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"time"

	"github.com/pqbranch/pqbranch/update/window"
)

// The update section: maintenance window, server, its CA and the trial.

const (
	// DefaultTrialTimeout is how long a new slot may take to become healthy
	// when update.trial_timeout is not set.
	DefaultTrialTimeout = 10 * time.Minute
	minTrialTimeout     = time.Minute
	maxTrialTimeout     = 2 * time.Hour
)

// validate checks the update section and fills u.Parsed.
func (u *Update) validate(p *problems) {
	u.Parsed = ParsedUpdate{TrialTimeout: DefaultTrialTimeout}

	w, err := window.Parse(u.Window)
	var pe *window.ParseError
	switch {
	case errors.As(err, &pe):
		for _, wp := range pe.Problems {
			field := "update.window"
			if wp.Field != "" {
				field += "." + wp.Field
			}
			p.add(field, "%s", wp.Expected)
		}
	case err != nil:
		p.add("update.window", "%v", err)
	default:
		u.Parsed.Window = w
	}

	// The URL is not echoed: it may carry a token.
	if u.URL != "" {
		const want = `expected an https URL like "https://updates.example/pqbranch/"`
		switch s, err := url.Parse(u.URL); {
		case err != nil:
			p.add("update.url", "%s, got text that is not a URL", want)
		case s.Scheme != "https":
			p.add("update.url", "%s, got scheme %q", want, s.Scheme)
		case s.Hostname() == "":
			p.add("update.url", "%s, got no host", want)
		case s.User != nil:
			p.add("update.url", "%s without a user name or password", want)
		}
	}

	if u.CA != "" {
		u.Parsed.CA = parseCA(p, u.CA)
	} else if u.URL != "" {
		p.add("update.ca", "required when update.url is set: expected PEM text with the server's CA certificate (the appliance has no public root store)")
	}

	if u.TrialTimeout != "" {
		d, err := time.ParseDuration(u.TrialTimeout)
		if err != nil || d < minTrialTimeout || d > maxTrialTimeout {
			p.add("update.trial_timeout", `expected a duration from "1m" to "2h" like "10m" (or leave out for 10m), got %q`, u.TrialTimeout)
		} else {
			u.Parsed.TrialTimeout = d
		}
	}
}

// parseCA reads PEM text holding one or more CERTIFICATE blocks. Any other
// block (a private key pasted by mistake) is refused, by its type only.
func parseCA(p *problems, text string) *x509.CertPool {
	pool := x509.NewCertPool()
	rest := []byte(text)
	n, ok := 0, true
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			p.add("update.ca", "PEM block %d: expected a CERTIFICATE, got a %q block", n, b.Type)
			ok = false
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			p.add("update.ca", "PEM block %d: expected an X.509 certificate: %v", n, err)
			ok = false
			continue
		}
		pool.AddCert(c)
	}
	if n == 0 {
		p.add("update.ca", `expected PEM text with at least one certificate ("-----BEGIN CERTIFICATE-----"), found none`)
		return nil
	}
	if !ok {
		return nil
	}
	return pool
}
