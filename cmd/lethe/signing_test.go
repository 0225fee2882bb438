package main

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/credential"
)

// The signed-message settings reach the roles: no master key and a 24h
// overlap by default; a key, another overlap and required signatures when
// set; a bad value names its variable.
func TestSigningSettings(t *testing.T) {
	c, err := parseEnv(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.roleSettings()
	if err != nil {
		t.Fatal(err)
	}
	if s.SystemKey != nil || s.CredentialOverlap != credential.DefaultOverlap || s.RequireSignatures {
		t.Errorf("defaults: key %v, overlap %v, require %v; want none, 24h, false", s.SystemKey, s.CredentialOverlap, s.RequireSignatures)
	}
	key := strings.Repeat("ab", 32)
	c, _ = parseEnv(t, map[string]string{"LETHE_SYSTEM_KEY": key, "LETHE_CREDENTIAL_OVERLAP": "2h", "LETHE_REQUIRE_SIGNATURES": "true"})
	s, err = c.roleSettings()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(key)
	want, _ := credential.New(raw)
	if s.SystemKey == nil || string(s.SystemKey.Secret("k_0000000000000001")) != string(want.Secret("k_0000000000000001")) ||
		s.CredentialOverlap != 2*time.Hour || !s.RequireSignatures {
		t.Errorf("set: key %v, overlap %v, require %v", s.SystemKey != nil, s.CredentialOverlap, s.RequireSignatures)
	}
	for k, v := range map[string]string{
		"LETHE_SYSTEM_KEY":         "abcd",
		"LETHE_CREDENTIAL_OVERLAP": "-1h",
		"LETHE_REQUIRE_SIGNATURES": "maybe",
	} {
		c, _ := parseEnv(t, map[string]string{k: v})
		if _, err := c.roleSettings(); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: err %v, want one naming the variable", k, v, err)
		}
	}
}
