package webhook_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors/webhook"
)

// TestSignVector pins the signature format with a vector computed outside
// Go (Python's hmac), for teams implementing the receiving side in other
// languages.
func TestSignVector(t *testing.T) {
	got := webhook.Sign([]byte("0123456789abcdef0123456789abcdef"), time.Unix(1700000000, 0), []byte(`{"command_id":"x"}`))
	want := "t=1700000000,v1=906a272ac1a11dc7d289f3e3d150979419c21c4b34d83c9f0a9be15fb4f4db73"
	if got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestSignRoundTrip(t *testing.T) {
	body := []byte(`{"identifiers":[{"type":"email","value":"ada@example.com"}]}`)
	now := time.Now()
	r := httptest.NewRequest(http.MethodPost, "/erase", strings.NewReader(string(body)))
	r.Header.Set(webhook.HeaderSignature, webhook.Sign(testSecret, now, body))
	v := &webhook.Verifier{Secret: testSecret, Now: func() time.Time { return now }}
	got, err := v.Verify(r)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if string(got) != string(body) {
		t.Errorf("Verify returned body %q, want %q", got, body)
	}
	again, _ := io.ReadAll(r.Body)
	if string(again) != string(body) {
		t.Errorf("r.Body after Verify = %q, want the body again", again)
	}
}

// signed builds a request whose signature header is made by sign.
func signed(body string, header string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/erase", strings.NewReader(body))
	if header != "" {
		r.Header.Set(webhook.HeaderSignature, header)
	}
	return r
}

func TestMiddlewareRejects(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := `{"command_id":"c1"}`
	other := []byte("another-secret-of-at-least-32-bytes!!")
	cases := []struct {
		name   string
		req    *http.Request
		secret []byte
		status int
		code   string
	}{
		{"unsigned", signed(body, ""), testSecret, 401, webhook.CodeMissingSignature},
		{"wrongly signed", signed(body, webhook.Sign(other, now, []byte(body))), testSecret, 401, webhook.CodeInvalidSignature},
		{"tampered body", signed(`{"command_id":"c2"}`, webhook.Sign(testSecret, now, []byte(body))), testSecret, 401, webhook.CodeInvalidSignature},
		{"timestamp changed", signed(body, strings.Replace(webhook.Sign(testSecret, now, []byte(body)), "t=1800000000", "t=1800000001", 1)), testSecret, 401, webhook.CodeInvalidSignature},
		{"stale", signed(body, webhook.Sign(testSecret, now.Add(-webhook.DefaultWindow-time.Second), []byte(body))), testSecret, 401, webhook.CodeStaleSignature},
		{"from the future", signed(body, webhook.Sign(testSecret, now.Add(webhook.DefaultWindow+time.Second), []byte(body))), testSecret, 401, webhook.CodeStaleSignature},
		{"no v1", signed(body, "t=1800000000"), testSecret, 401, webhook.CodeInvalidSignature},
		{"no timestamp", signed(body, "v1="+strings.Repeat("ab", 32)), testSecret, 401, webhook.CodeInvalidSignature},
		{"garbage", signed(body, "sha256=whatever"), testSecret, 401, webhook.CodeInvalidSignature},
		{"short v1", signed(body, "t=1800000000,v1=abcd"), testSecret, 401, webhook.CodeInvalidSignature},
		{"body over 1 MiB", signed(strings.Repeat("x", webhook.MaxBodyBytes+1), webhook.Sign(testSecret, now, []byte(strings.Repeat("x", webhook.MaxBodyBytes+1)))), testSecret, 413, webhook.CodeBodyTooLarge},
		{"verifier secret too short", signed(body, webhook.Sign([]byte("short"), now, []byte(body))), []byte("short"), 500, webhook.CodeMisconfigured},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &webhook.Verifier{Secret: tc.secret, Now: func() time.Time { return now }}
			var reached atomic.Bool
			h := v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Store(true) }))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.req)
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if code := errorCodeOf(t, w); code != tc.code {
				t.Errorf("error code = %q, want %q", code, tc.code)
			}
			if reached.Load() {
				t.Error("the rejected request reached the handler")
			}
		})
	}
}

func errorCodeOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("rejection body %q is not Lethe's error shape: %v", w.Body.String(), err)
	}
	if e.Error.Message == "" {
		t.Errorf("rejection %q has no message", e.Error.Code)
	}
	return e.Error.Code
}

func TestMiddlewareAcceptsAndPassesTheBody(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &webhook.Verifier{Secret: testSecret, Now: func() time.Time { return now }}
	var got string
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	for _, at := range []time.Time{now, now.Add(-webhook.DefaultWindow), now.Add(webhook.DefaultWindow)} {
		body := `{"at":"` + at.String() + `"}`
		w := httptest.NewRecorder()
		h.ServeHTTP(w, signed(body, webhook.Sign(testSecret, at, []byte(body))))
		if w.Code != http.StatusOK {
			t.Errorf("signed at now%+v: status = %d (%s), want 200", at.Sub(now), w.Code, w.Body)
		}
		if got != body {
			t.Errorf("handler read %q, want %q", got, body)
		}
	}
}

// TestMiddlewareRejectsReplays sends the very same signed request twice over
// HTTP: the second is a replay.
func TestMiddlewareRejectsReplays(t *testing.T) {
	v := &webhook.Verifier{Secret: testSecret}
	var calls atomic.Int32
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) })))
	defer srv.Close()

	body := `{"command_id":"c1"}`
	header := webhook.Sign(testSecret, time.Now(), []byte(body))
	send := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set(webhook.HeaderSignature, header)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("post: %v", err)
		}
		return resp
	}
	if resp := send(); resp.StatusCode != http.StatusOK {
		t.Fatalf("first delivery: status = %d, want 200", resp.StatusCode)
	}
	resp := send()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay: status = %d, want 401", resp.StatusCode)
	}
	var e struct{ Error struct{ Code string } }
	json.NewDecoder(resp.Body).Decode(&e)
	if e.Error.Code != webhook.CodeReplayed {
		t.Errorf("replay: code = %q, want %q", e.Error.Code, webhook.CodeReplayed)
	}
	// Reformatting the header does not make the replay new.
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set(webhook.HeaderSignature, strings.Replace(header, ",", ", ", 1)+",v0=ignored")
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("reformatted replay: %v, %v; want 401", resp.StatusCode, err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler reached %d times, want 1", n)
	}
}

// TestVerifierConcurrentReplays races many copies of one request: exactly
// one may pass.
func TestVerifierConcurrentReplays(t *testing.T) {
	v := &webhook.Verifier{Secret: testSecret}
	body := `{"command_id":"c1"}`
	header := webhook.Sign(testSecret, time.Now(), []byte(body))
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(signed(body, header)); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := ok.Load(); n != 1 {
		t.Errorf("%d copies accepted, want 1", n)
	}
}
