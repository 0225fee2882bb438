package digest_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/digest"
)

func TestSum(t *testing.T) {
	d, err := digest.New(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := digest.New(bytes.Repeat([]byte{2}, 32))
	a := d.Sum("email", "ada@example.com")
	if len(a) != 64 || strings.Contains(a, "ada") {
		t.Errorf("digest %q is not 64 hex digits free of the value", a)
	}
	if d.Sum("email", "ada@example.com") != a {
		t.Error("the same input gave two digests")
	}
	if d.Sum("user_id", "ada@example.com") == a {
		t.Error("the type does not change the digest")
	}
	if other.Sum("email", "ada@example.com") == a {
		t.Error("the key does not change the digest")
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if d.Sum("ab", "c") == d.Sum("a", "bc") {
		t.Error("type and value run together")
	}
}

func TestKeys(t *testing.T) {
	if _, err := digest.New(make([]byte, 31)); err == nil {
		t.Error("a 31-byte key was accepted")
	}
	for _, bad := range []string{"", "xyz", strings.Repeat("ab", 31)} {
		if _, err := digest.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	k, err := digest.ParseKey(strings.Repeat("0f", 32))
	if err != nil || len(k) != 32 {
		t.Errorf("ParseKey of 64 hex digits = %d bytes, %v", len(k), err)
	}
}
