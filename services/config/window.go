package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
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

	// URLs are not echoed: they may carry a token.
	checkHTTPS(p, "update.url", u.URL, "https://updates.example/pqbranch/")
	checkHTTPS(p, "update.repository", u.Repository, "https://updates.example/pqbranch/repo/")
	checkHTTPS(p, "update.report_url", u.ReportURL, "https://fleet.example/")
	if u.URL != "" && u.Repository != "" {
		p.add("update.repository", "expected either update.url (one bundle) or update.repository (a release repository), not both")
	}

	if u.CA != "" {
		u.Parsed.CA = parseCA(p, u.CA)
	} else {
		for _, f := range []struct{ name, value string }{{"url", u.URL}, {"repository", u.Repository}, {"report_url", u.ReportURL}} {
			if f.value != "" {
				p.add("update.ca", "required when update.%s is set: expected PEM text with the server's CA certificate (the appliance has no public root store)", f.name)
				break
			}
		}
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

// checkHTTPS checks an https URL field of the update section; empty is
// allowed (the field is optional).
func checkHTTPS(p *problems, field, raw, example string) {
	if raw == "" {
		return
	}
	want := fmt.Sprintf("expected an https URL like %q", example)
	switch s, err := url.Parse(raw); {
	case err != nil:
		p.add(field, "%s, got text that is not a URL", want)
	case s.Scheme != "https":
		p.add(field, "%s, got scheme %q", want, s.Scheme)
	case s.Hostname() == "":
		p.add(field, "%s, got no host", want)
	case s.User != nil:
		p.add(field, "%s without a user name or password", want)
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
