package codec_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/codec"
)

// tokens is a verifier of fixed credentials.
type tokens map[string]auth.Principal

func (v tokens) Verify(_ context.Context, c string) (auth.Principal, error) {
	if p, ok := v[c]; ok {
		return p, nil
	}
	return auth.Principal{}, fmt.Errorf("%w: unknown", auth.ErrUnauthenticated)
}

// TestHandlerNeedsCodecDecode checks the guarded endpoint: no or a bad
// credential answers 401, one without codec:decode 403, the right one
// decodes, the browser's preflight needs none, and each call is logged with
// its actor but without the payload.
func TestHandlerNeedsCodecDecode(t *testing.T) {
	k := mustKeys(t, "k1:"+oldKeyHex)
	var logs bytes.Buffer
	v := tokens{
		"reader":  {Subject: "alice", Scopes: []auth.Scope{auth.CodecDecode}},
		"nocodec": {Subject: "bob", Scopes: []auth.Scope{auth.ErasuresRead}},
	}
	srv := httptest.NewServer(codec.Handler(k, []string{uiOrigin}, codec.Access{
		Verifier: v, Log: slog.New(slog.NewTextHandler(&logs, nil))}))
	t.Cleanup(srv.Close)
	enc, err := codec.DataConverter(k).ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	call := func(token string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", bytes.NewReader(toUI(enc)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", uiOrigin)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for token, want := range map[string]int{"": 401, "forged": 401, "nocodec": 403} {
		resp := call(token)
		if resp.StatusCode != want {
			t.Errorf("decode with %q = %d, want %d", token, resp.StatusCode, want)
		}
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("decode with %q: no WWW-Authenticate challenge", token)
		}
	}
	out := readUI(t, call("reader"))
	if len(out.Payloads) != 1 || string(out.Payloads[0].Metadata[converter.MetadataEncoding]) != "json/plain" {
		t.Fatalf("decode with codec:decode = %+v, want the plain payload", out)
	}
	pre, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	pre.Header.Set("Origin", uiOrigin)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := srv.Client().Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("preflight = %d, want 204 without a credential", resp.StatusCode)
	}
	l := logs.String()
	if !strings.Contains(l, "actor=alice") || !strings.Contains(l, "codec call refused") {
		t.Errorf("log lacks the decode's actor or the refusals:\n%s", l)
	}
	if strings.Contains(l, canary) || strings.Contains(l, "reader") {
		t.Errorf("log holds a payload value or a credential:\n%s", l)
	}
}

// TestHandlerCookieCredential checks the cookie `lethe dev` uses: accepted
// only where Access names it, and refused like any credential when forged.
func TestHandlerCookieCredential(t *testing.T) {
	k := mustKeys(t, "k1:"+oldKeyHex)
	v := tokens{"reader": {Subject: "dev", Scopes: []auth.Scope{auth.CodecDecode}}}
	enc, err := codec.DataConverter(k).ToPayload(subject{Email: canary})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, cookieName, value string
		want                    int
	}{
		{"named cookie", "session", "reader", http.StatusOK},
		{"forged cookie", "session", "forged", http.StatusUnauthorized},
		{"cookie not named by Access", "", "reader", http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(codec.Handler(k, []string{uiOrigin}, codec.Access{Verifier: v, Cookie: c.cookieName}))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", bytes.NewReader(toUI(enc)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", uiOrigin)
			req.AddCookie(&http.Cookie{Name: "session", Value: c.value})
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("decode = %d, want %d", resp.StatusCode, c.want)
			}
		})
	}
}
