package api_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/credential"
)

// IssueCredential is the fake's: a system it knows gets a numbered key id,
// and the overlap asked for is remembered.
func (s *fakeStore) IssueCredential(ctx context.Context, system, actor string, overlap time.Duration) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return "", s.err
	}
	if _, ok := s.systems[system]; !ok {
		return "", systemNotFound()
	}
	s.writes++
	s.lastOverlap = overlap
	return fmt.Sprintf("k_%016x", s.writes), nil
}

var secretRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestIssueCredential(t *testing.T) {
	master, err := credential.New(bytes.Repeat([]byte{9}, credential.MinMasterKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, func(c *api.Config) { c.SystemKey = master })
	if res := h.putSystem(t, "orders", `{"identifiers":["user_id"]}`); res.status != http.StatusCreated {
		t.Fatalf("PUT system = %d", res.status)
	}

	res := h.do(t, req{method: "POST", path: "/v1/systems/orders/credentials"})
	if res.status != http.StatusCreated {
		t.Fatalf("POST credentials = %d %s, want 201", res.status, res.body)
	}
	var got struct {
		KeyID  string `json:"key_id"`
		Secret string `json:"secret"`
	}
	res.decode(t, &got)
	if !secretRe.MatchString(got.Secret) {
		t.Errorf("secret %q is not 64 lowercase hex digits", got.Secret)
	}
	if want := hex.EncodeToString(master.Secret(got.KeyID)); got.Secret != want {
		t.Errorf("secret is not the one derived from the system key and %q", got.KeyID)
	}
	if h.store.lastOverlap != credential.DefaultOverlap {
		t.Errorf("overlap passed to the store = %s, want the default %s", h.store.lastOverlap, credential.DefaultOverlap)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store on an answer carrying a secret", res.header.Get("Cache-Control"))
	}
	if strings.Contains(h.logs.String(), got.Secret) {
		t.Error("the secret reached the logs")
	}

	for _, tc := range []struct {
		path, code string
		status     int
	}{
		{"/v1/systems/nobody/credentials", "system_not_found", http.StatusNotFound},
		{"/v1/systems/Bad!/credentials", "invalid_name", http.StatusBadRequest},
	} {
		res := h.do(t, req{method: "POST", path: tc.path})
		if res.status != tc.status || res.errorCode(t) != tc.code {
			t.Errorf("POST %s = %d %s, want %d %s", tc.path, res.status, res.errorCode(t), tc.status, tc.code)
		}
	}
}

func TestIssueCredentialWithoutSystemKey(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) { c.CredentialOverlap = time.Hour })
	h.putSystem(t, "orders", `{"identifiers":["user_id"]}`)
	writes := h.store.writes
	res := h.do(t, req{method: "POST", path: "/v1/systems/orders/credentials"})
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "system_key_missing" {
		t.Errorf("POST credentials without LETHE_SYSTEM_KEY = %d %s, want 503 system_key_missing", res.status, res.errorCode(t))
	}
	if h.store.writes != writes {
		t.Error("a refused issue wrote to the store")
	}
}
