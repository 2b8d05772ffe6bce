package edge

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// plugins is the explicit load list. kernel-libipsec must precede
// kernel-netlink so that it, not the kernel (which has no ESP here), gets the
// IPsec SAs; kernel-netlink still handles addresses and routes.
var plugins = []string{
	"random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "pubkey",
	"sha1", "sha2", "hmac", "kdf", "gcm", "aes", "curve25519",
	"kernel-libipsec", "kernel-netlink", "socket-default", "vici", "updown",
}

// dropInPath is read after Debian's per-plugin files (which say
// kernel-libipsec.load = no and would otherwise win over the load list).
const dropInPath = "etc/strongswan.d/zz-pqbranch.conf"

// strongswanConf renders the drop-in, loading only the plugins the root has
// (strongSwan 5.9 has no kdf or drbg plugin and refuses to start on an
// unknown name in the list).
func strongswanConf(root string, o Options) string {
	var load []string
	for _, p := range append(append([]string{}, plugins...), o.ExtraPlugins...) {
		if _, err := os.Stat(filepath.Join(root, "usr/lib/ipsec/plugins", "libstrongswan-"+p+".so")); err == nil {
			load = append(load, p)
		}
	}
	var b strings.Builder
	b.WriteString("# Written by qemu/edge: overrides Debian's defaults.\ncharon {\n")
	b.WriteString("\tload_modular = no\n")
	fmt.Fprintf(&b, "\tload = %s\n", strings.Join(load, " "))
	if o.FragmentSize > 0 {
		fmt.Fprintf(&b, "\tfragment_size = %d\n", o.FragmentSize)
	}
	b.WriteString("\tplugins {\n\t\tkernel-libipsec {\n\t\t\tload = yes\n\t\t}\n\t}\n")
	b.WriteString("\tfilelog {\n\t\tstderr {\n")
	b.WriteString("\t\t\ttime_format = %H:%M:%S\n\t\t\ttime_precision = ms\n\t\t\tflush_line = yes\n\t\t\tike_name = yes\n")
	keys := make([]string, 0, len(o.LogLevels))
	for k := range o.LogLevels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\t\t\t%s = %d\n", k, o.LogLevels[k])
	}
	b.WriteString("\t\t}\n\t}\n\tsyslog {\n\t}\n}\n")
	return b.String()
}

// swanctlConf renders /etc/swanctl/swanctl.conf for the connection.
func swanctlConf(o Options) string {
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("\t", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(0, "connections {")
	w(1, "%s {", o.Name)
	w(2, "version = 2")
	if o.LocalAddrs != "" {
		w(2, "local_addrs = %s", o.LocalAddrs)
	}
	w(2, "remote_addrs = %s", o.RemoteAddrs)
	w(2, "proposals = %s", strings.Join(o.Proposals, ","))
	w(2, "fragmentation = %s", o.Fragmentation)
	writeDuration(w, 2, "rekey_time", o.RekeyTime)
	writeDuration(w, 2, "reauth_time", o.ReauthTime)
	writeDuration(w, 2, "dpd_delay", o.DPDDelay)
	if o.NoMOBIKE {
		w(2, "mobike = no")
	}
	if o.ExtraConn != "" {
		b.WriteString(o.ExtraConn)
		b.WriteByte('\n')
	}
	method := "psk"
	if o.Auth.PSK == "" {
		method = "pubkey"
	}
	w(2, "local {")
	w(3, "auth = %s", method)
	w(3, "id = %s", o.LocalID)
	if method == "pubkey" {
		w(3, "certs = %s.pem", o.Name)
	}
	w(2, "}")
	w(2, "remote {")
	w(3, "auth = %s", method)
	w(3, "id = %s", o.RemoteID)
	if method == "pubkey" {
		w(3, "cacerts = %s-ca.pem", o.Name)
	}
	w(2, "}")
	w(2, "children {")
	for _, c := range o.Children {
		w(3, "%s {", c.Name)
		w(4, "local_ts = %s", tsList(c.LocalTS))
		w(4, "remote_ts = %s", tsList(c.RemoteTS))
		w(4, "esp_proposals = %s", strings.Join(c.ESPProposals, ","))
		w(4, "mode = %s", c.Mode)
		w(4, "start_action = %s", c.StartAction)
		writeDuration(w, 4, "rekey_time", c.RekeyTime)
		if c.DPDAction != "" {
			w(4, "dpd_action = %s", c.DPDAction)
		}
		if c.CloseAction != "" {
			w(4, "close_action = %s", c.CloseAction)
		}
		w(3, "}")
	}
	w(2, "}")
	w(1, "}")
	w(0, "}")
	if o.Auth.PSK != "" {
		// Base64 ("0s") sidesteps quoting whatever bytes the PSK holds.
		w(0, "secrets {")
		w(1, "ike-%s {", o.Name)
		w(2, "secret = 0s%s", base64.StdEncoding.EncodeToString([]byte(o.Auth.PSK)))
		w(1, "}")
		w(0, "}")
	}
	return b.String()
}

func writeDuration(w func(int, string, ...any), indent int, key string, d time.Duration) {
	switch {
	case d < 0:
		w(indent, "%s = 0", key)
	case d > 0:
		w(indent, "%s = %ds", key, int(d.Round(time.Second)/time.Second))
	}
}

func tsList(ts []string) string {
	if len(ts) == 0 {
		return "dynamic"
	}
	return strings.Join(ts, ",")
}

// writeConfig writes the drop-in, swanctl.conf and any certificates into the
// instance root.
func writeConfig(root string, o Options) error {
	files := map[string][]byte{
		dropInPath:                 []byte(strongswanConf(root, o)),
		"etc/swanctl/swanctl.conf": []byte(swanctlConf(o)),
	}
	if o.Auth.PSK == "" {
		files["etc/swanctl/x509/"+o.Name+".pem"] = o.Auth.Cert.CertPEM
		files["etc/swanctl/private/"+o.Name+".key"] = o.Auth.Cert.KeyPEM
		files["etc/swanctl/x509ca/"+o.Name+"-ca.pem"] = o.Auth.CA.CertPEM
	}
	for rel, data := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("edge: write %s: %w", rel, err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return fmt.Errorf("edge: write %s: %w", rel, err)
		}
	}
	return nil
}
