package credential_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/credential"
)

func TestSecretIsTheDocumentedDerivation(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	m, err := credential.New(key)
	if err != nil {
		t.Fatal(err)
	}
	h := hmac.New(sha256.New, key)
	h.Write([]byte("lethe.system-credential.v1:k_0123456789abcdef"))
	want := hex.EncodeToString(h.Sum(nil))
	if got := hex.EncodeToString(m.Secret("k_0123456789abcdef")); got != want {
		t.Errorf("Secret = %s, want %s", got, want)
	}
	if hex.EncodeToString(m.Secret("k_0123456789abcdee")) == want {
		t.Error("two key ids derived the same secret")
	}
}

func TestMasterKeyBounds(t *testing.T) {
	if _, err := credential.New(make([]byte, 31)); err == nil {
		t.Error("New accepted a 31-byte key")
	}
	if _, err := credential.ParseMasterKey(strings.Repeat("ab", 31)); err == nil {
		t.Error("ParseMasterKey accepted 62 hex digits")
	}
	if _, err := credential.ParseMasterKey(strings.Repeat("zz", 32)); err == nil {
		t.Error("ParseMasterKey accepted non-hex")
	}
	if k, err := credential.ParseMasterKey(strings.Repeat("ab", 32)); err != nil || len(k) != 32 {
		t.Errorf("ParseMasterKey(64 hex digits) = %d bytes, %v", len(k), err)
	}
}

func TestNewKeyID(t *testing.T) {
	a, err := credential.NewKeyID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := credential.NewKeyID()
	if !credential.ValidKeyID(a) || !credential.ValidKeyID(b) || a == b {
		t.Errorf("NewKeyID gave %q and %q", a, b)
	}
	for _, bad := range []string{"", "k_0123", "K_0123456789abcdef", "k_0123456789ABCDEF", "k_0123456789abcdef0"} {
		if credential.ValidKeyID(bad) {
			t.Errorf("ValidKeyID(%q) = true", bad)
		}
	}
}
