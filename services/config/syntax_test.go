package config

import (
	"strings"
	"testing"
)

// A syntax error inside or right after the PSK string must not echo the
// offending character, which may be the PSK's: the message reaches the
// console and the status page. Line and column locate it instead.
func TestSyntaxErrorHidesPSK(t *testing.T) {
	for _, tt := range []struct{ name, psk, bad string }{
		{"unescaped quote inside", `Zq7#Wv9"!Kx2$Mn4%`, "!"},
		{"tab inside", "Zq7#Wv9\t!Kx2$Mn4%", `\t`},
		{"control character inside", "Zq7#Wv9\x01!Kx2$Mn4%", `\x01`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := "{\n  \"tunnel\": {\"psk\": \"" + tt.psk + "\"}\n}"
			_, err := Parse("f", []byte(doc))
			if err == nil || !strings.Contains(err.Error(), "f: line 2 column ") || !strings.Contains(err.Error(), "invalid JSON: invalid character") {
				t.Fatalf("Parse() = %v, want a located syntax error", err)
			}
			if msg := err.Error(); strings.Contains(msg, tt.bad) || strings.Contains(msg, "'") {
				t.Fatalf("error echoes the offending character: %s", msg)
			}
		})
	}
}
