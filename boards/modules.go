package boards

import "fmt"

// moduleSets are the module groups a board file may name with "@set". Every
// board needs the appliance set; listing it once here keeps board files to
// what differs between boards.
//
// The kernel asks a user-space modprobe for netfilter expressions and crypto
// algorithms on first use. The appliance has no modprobe, so everything the
// firewall and ESP use is loaded up front.
var moduleSets = map[string][]string{
	"appliance": {
		// First: libcrc32c (nf_tables) and ext4 look up crc32c when they load.
		"crc32c_generic", "crc32c_intel",
		// Firewall (services/firewall).
		"nf_tables", "nf_conntrack", "nf_nat", "nft_ct", "nft_nat", "nft_masq",
		"nft_chain_nat", "nft_reject_inet", "nft_fib_inet", "nft_limit", "nft_xfrm", "nft_log",
		// IPsec data plane (services/ike).
		"xfrm_user", "esp4", "esp6", "authenc", "seqiv", "echainiv",
		"gcm", "ctr", "ghash_generic", "ghash_clmulni_intel", "aesni_intel", "cryptd", "crypto_simd",
		// seqiv and echainiv salt their IVs from the default "stdrng" when an
		// SA is created; without drbg that lookup fails and adding the SA
		// returns ENOENT. drbg self-tests its CTR and HMAC variants as it
		// loads, so ctr(aes) and sha512 must be there before it. It runs
		// without jitterentropy_rng outside FIPS mode.
		"sha512_generic", "drbg",
		// Slots (FAT), the data partition (ext4), and A/B boot steering.
		"vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii", "ext4", "efivarfs",
	},
}

// ExpandModules returns the board's module list with "@set" entries replaced.
func (b *Board) ExpandModules() ([]string, error) {
	var out []string
	for i, m := range b.Modules {
		if len(m) > 1 && m[0] == '@' {
			set, ok := moduleSets[m[1:]]
			if !ok {
				return nil, &Error{b.File, fmt.Sprintf("modules[%d]", i), fmt.Sprintf("unknown module set %q; expected @appliance", m)}
			}
			out = append(out, set...)
			continue
		}
		out = append(out, m)
	}
	return out, nil
}
