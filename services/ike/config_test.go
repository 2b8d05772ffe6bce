package ike

import "net/netip"

// validConfig is a PSK tunnel config that passes Validate (see ikeconf).
func validConfig() Config {
	return Config{
		LocalID: "branch1.example", RemoteID: "edge.example", Remote: "192.0.2.1",
		Auth: "psk", PSK: NewSecret("0123456789abcdef-secret"),
		LocalSubnets:  mustPrefixes("198.18.1.0/24"),
		RemoteSubnets: mustPrefixes("198.18.0.0/24", "198.19.0.0/16"),
	}
}

func mustPrefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}
