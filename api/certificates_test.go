package api_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/certificate"
)

func signerFor(t *testing.T, b byte) *certificate.Signer {
	t.Helper()
	s, err := certificate.NewSigner(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const certSubject = `{"subject":{"user_id":"u-cert-1","email":"ada@example.com"},"reason":"gdpr_art17"}`

func TestCertificate(t *testing.T) {
	signer := signerFor(t, 1)
	h := newHarnessWith(t, func(c *api.Config) { c.Signer = signer })
	e := h.createErasure(t, certSubject)
	path := "/v1/erasures/" + e.ID + "/certificate"

	res := h.do(t, req{method: "GET", path: path})
	if res.status != http.StatusConflict || res.errorCode(t) != "not_finished" {
		t.Fatalf("certificate of a pending request = %s, want 409 not_finished", describe(res))
	}
	for _, p := range []string{
		"/v1/erasures/6f1c0000-0000-4000-8000-000000000001/certificate",
		"/v1/erasures/not-a-uuid/certificate",
	} {
		if res := h.do(t, req{method: "GET", path: p}); res.status != http.StatusNotFound || res.errorCode(t) != "erasure_not_found" {
			t.Errorf("GET %s = %s, want 404 erasure_not_found", p, describe(res))
		}
	}

	confirmed := testNow.Add(time.Minute).Truncate(time.Microsecond)
	h.store.finish(e.ID, lethe.RequestCompleted, testNow.Add(2*time.Minute).Truncate(time.Microsecond), []lethe.SystemProgress{
		{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 3, ConfirmedAt: &confirmed},
	})
	res = h.do(t, req{method: "GET", path: path})
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("certificate of a completed request = %s", describe(res))
	}
	c, key, err := certificate.Verify(res.body, []ed25519.PublicKey{signer.Public()})
	if err != nil || !key.Equal(signer.Public()) {
		t.Fatalf("served certificate does not verify: %v\n%s", err, res.body)
	}
	if c.RequestID != e.ID || c.Status != "completed" || len(c.Subject) != 2 || c.Subject[0].Type != "email" ||
		len(c.Systems) != 1 || c.Systems[0].Records != 3 || !c.IssuedAt.Equal(testNow.Truncate(time.Microsecond)) ||
		c.Audit.ChainHead != fakeChainHead {
		t.Errorf("certificate = %+v", c)
	}
	for _, value := range []string{"u-cert-1", "ada@example.com"} {
		if bytes.Contains(res.body, []byte(value)) {
			t.Errorf("certificate contains the identifier value %q", value)
		}
	}
	again := h.do(t, req{method: "GET", path: path})
	if !bytes.Equal(again.body, res.body) || h.store.certSaves != 1 {
		t.Errorf("second GET answered another file or stored again (%d saves)", h.store.certSaves)
	}
}

func TestCertificateWithoutSigningKey(t *testing.T) {
	h := newHarness(t)
	e := h.createErasure(t, certSubject)
	h.store.finish(e.ID, lethe.RequestFailed, testNow, nil)
	path := "/v1/erasures/" + e.ID + "/certificate"
	res := h.do(t, req{method: "GET", path: path})
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "signing_key_missing" {
		t.Errorf("certificate without a key = %s, want 503 signing_key_missing", describe(res))
	}
	// One issued before (by a replica with the key) is still served.
	h.store.certificates[e.ID] = []byte("{\"stored\":true}\n")
	if res := h.do(t, req{method: "GET", path: path}); res.status != http.StatusOK || string(res.body) != "{\"stored\":true}\n" {
		t.Errorf("stored certificate without a key = %s", describe(res))
	}
	var keys struct {
		Keys []json.RawMessage `json:"keys"`
	}
	res = h.do(t, req{method: "GET", path: "/v1/keys"})
	res.decode(t, &keys)
	if res.status != http.StatusOK || keys.Keys == nil || len(keys.Keys) != 0 {
		t.Errorf("GET /v1/keys without keys = %s, want an empty list", describe(res))
	}
}

func TestKeys(t *testing.T) {
	active, retired := signerFor(t, 1), signerFor(t, 2)
	h := newHarnessWith(t, func(c *api.Config) {
		c.Signer = active
		c.RetiredKeys = []ed25519.PublicKey{retired.Public()}
	})
	res := h.do(t, req{method: "GET", path: "/v1/keys"})
	if res.status != http.StatusOK {
		t.Fatalf("GET /v1/keys = %s", describe(res))
	}
	var set certificate.KeySet
	res.decode(t, &set)
	if len(set.Keys) != 2 || set.Keys[0].KeyID != active.KeyID() || !set.Keys[0].Active ||
		set.Keys[1].KeyID != retired.KeyID() || set.Keys[1].Active {
		t.Errorf("GET /v1/keys = %s, want the active key then the retired one", res.body)
	}
	keys, err := certificate.ParseKeySet(res.body)
	if err != nil || len(keys) != 2 || !keys[1].Equal(retired.Public()) {
		t.Errorf("ParseKeySet of the answer = %v, %v", keys, err)
	}
	if strings.Contains(string(res.body), "private") {
		t.Errorf("GET /v1/keys mentions a private key: %s", res.body)
	}
}
