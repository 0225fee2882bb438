package connectortest

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/wire"
)

// TestStandInRefusesStrangersAndUnsignedPosts: the stand-in's routes answer
// 401 without the run's token or with another, and refuse a confirmation
// posted without a valid signature with 403 bad_signature, keeping it apart
// so that await says why rather than timing out.
func TestStandInRefusesStrangersAndUnsignedPosts(t *testing.T) {
	_, secret, err := newCredential()
	if err != nil {
		t.Fatal(err)
	}
	st, err := startStandIn(PullConfig{System: "shop", Listen: "127.0.0.1:0", Token: "tok", KeyID: "k_1", Secret: hex.EncodeToString(secret), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.shutdown()
	do := func(method, path, token, body string, header ...string) int {
		req, err := http.NewRequest(method, st.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, token := range []string{"", "other"} {
		if got := do(http.MethodGet, "/v1/systems/shop/commands?wait=0s", token, ""); got != http.StatusUnauthorized {
			t.Errorf("GET with token %q = %d, want 401", token, got)
		}
		if got := do(http.MethodPost, "/v1/systems/shop/confirmations", token, "{}"); got != http.StatusUnauthorized {
			t.Errorf("POST with token %q = %d, want 401", token, got)
		}
	}
	if got := do(http.MethodGet, "/v1/systems/shop/commands?wait=0s", "tok", ""); got != http.StatusOK {
		t.Errorf("GET with the token = %d, want 200", got)
	}
	const conf = `{"schema":"erasure.confirmation.v1","command_id":"0b5c0000-0000-4000-8000-000000000000","request_id":"6f1c0000-0000-4000-8000-000000000000","system":"shop","outcome":"erased","records":1,"confirmed_at":"2026-11-25T10:00:02Z"}`
	if got := do(http.MethodPost, "/v1/systems/shop/confirmations", "tok", conf, wire.HeaderKeyID, "k_1", wire.HeaderSignature, wire.Sign([]byte("not the secret"), []byte(conf))); got != http.StatusForbidden {
		t.Errorf("badly signed POST = %d, want 403", got)
	}
	if st.confirmed("0b5c0000-0000-4000-8000-000000000000") != 0 {
		t.Error("a badly signed confirmation was counted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := st.await(ctx, "0b5c0000-0000-4000-8000-000000000000", 1); !errors.As(err, new(*signatureError)) {
		t.Errorf("await after a badly signed post = %v, want a signature error", err)
	}
	if got := do(http.MethodPost, "/v1/systems/shop/confirmations", "tok", conf, wire.HeaderKeyID, "k_1", wire.HeaderSignature, wire.Sign(secret, []byte(conf))); got != http.StatusAccepted {
		t.Errorf("signed POST = %d, want 202", got)
	}
	if st.confirmed("0b5c0000-0000-4000-8000-000000000000") != 1 {
		t.Error("a signed confirmation was not counted")
	}
}
