package network

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// resolvConf renders resolv.conf: configured servers win over the WAN's.
func resolvConf(servers, wanDNS []netip.Addr, search []string) []byte {
	if len(servers) == 0 {
		servers = wanDNS
	}
	var b bytes.Buffer
	b.WriteString("# written by pqbranch; edit the appliance config instead\n")
	for i, s := range servers {
		if i == 3 { // the resolver reads no more than three
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		b.WriteString("search")
		for _, s := range search {
			b.WriteString(" " + s)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// writeResolvConf replaces the file atomically, so a resolver never reads
// half of it.
func (n *netw) writeResolvConf() error {
	dns := n.cfg.DNS
	if n.opts.DNS != nil {
		dns = n.opts.DNS()
	}
	data := resolvConf(dns.Servers, n.wanDNS, dns.Search)
	path := n.opts.ResolvConf
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".resolv.conf.*")
	if err != nil {
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("network: write %s: %w", path, err)
	}
	return nil
}
