package wire_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/wire"
)

// signVectors are the test vectors docs/connectors.md publishes, so that a
// connector written in another language can check its HMAC against them.
// Each was also computed with Python's hmac, Node's crypto.createHmac and
// `openssl dgst -sha256 -mac HMAC -macopt hexkey:<secret>`.
var signVectors = []struct {
	secret, message, signature string
}{
	{
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		"hello",
		"53c40272a70c15ca4ee0af4df1f155fd6c41e00ce2307d8987ecd4bb36a7e990",
	},
	{
		"4c657468652074657374207665637420736563726574206f662033322062797465",
		`{"schema":"erasure.confirmation.v1"}`,
		"e7a50bba0c898f392f1116fee59778e7a4d7844d022016de6bd67baa34d3ffc3",
	},
	{
		strings.Repeat("0b", 32),
		"",
		"5177e637aaac0b50e5dca8bb05b0b571444bd59b9b0d834d50681af21fc14b1e",
	},
}

func TestSignVectors(t *testing.T) {
	for _, v := range signVectors {
		secret, err := hex.DecodeString(v.secret)
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.Sign(secret, []byte(v.message)); got != v.signature {
			t.Errorf("Sign(%s, %q) = %s, want %s", v.secret, v.message, got, v.signature)
		}
		if !wire.Verify(secret, []byte(v.message), v.signature) {
			t.Errorf("Verify(%s, %q) refused its own vector", v.secret, v.message)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	v := signVectors[1]
	secret, _ := hex.DecodeString(v.secret)
	other, _ := hex.DecodeString(signVectors[0].secret)
	flipped := []byte(v.message)
	flipped[3] ^= 1
	for _, tc := range []struct {
		name      string
		secret    []byte
		message   string
		signature string
	}{
		{"another secret", other, v.message, v.signature},
		{"a flipped byte of the message", secret, string(flipped), v.signature},
		{"a flipped signature digit", secret, v.message, "f" + v.signature[1:]},
		{"uppercase hex", secret, v.message, strings.ToUpper(v.signature)},
		{"a truncated signature", secret, v.message, v.signature[:63]},
		{"an empty signature", secret, v.message, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if wire.Verify(tc.secret, []byte(tc.message), tc.signature) {
				t.Error("Verify accepted it")
			}
		})
	}
}
