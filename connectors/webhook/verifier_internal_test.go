package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var internalSecret = []byte("an-internal-secret-of-32-bytes-or-more")

func signedRequest(secret []byte, at time.Time, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set(HeaderSignature, Sign(secret, at, []byte(body)))
	return r
}

// TestVerifierForgetsAfterTheWindow checks the memory of signatures is
// bounded in time: once a signature's timestamp is stale it is forgotten.
func TestVerifierForgetsAfterTheWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Secret: internalSecret, Window: time.Minute, Now: func() time.Time { return now }}
	for i := range 10 {
		if _, err := v.Verify(signedRequest(internalSecret, now, fmt.Sprint(i))); err != nil {
			t.Fatalf("Verify %d: %v", i, err)
		}
	}
	if n := v.remembered(); n != 10 {
		t.Fatalf("remembered %d signatures, want 10", n)
	}
	sent := now
	now = now.Add(time.Minute)
	// At the edge of the window the old ones still count as replays.
	if _, err := v.Verify(signedRequest(internalSecret, sent, "0")); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay at the window's edge: %v, want ErrReplayed", err)
	}
	now = now.Add(time.Second)
	if _, err := v.Verify(signedRequest(internalSecret, now, "new")); err != nil {
		t.Fatalf("Verify after the window: %v", err)
	}
	if n := v.remembered(); n != 1 {
		t.Errorf("remembered %d signatures after the window, want only the new one", n)
	}
}

// TestVerifierFailsClosedWhenFull checks the memory is bounded in size, and
// that a full memory refuses requests rather than forgetting a signature
// that could then be replayed.
func TestVerifierFailsClosedWhenFull(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Secret: internalSecret, MaxSeen: 2, Now: func() time.Time { return now }}
	for i := range 2 {
		if _, err := v.Verify(signedRequest(internalSecret, now, fmt.Sprint(i))); err != nil {
			t.Fatalf("Verify %d: %v", i, err)
		}
	}
	w := httptest.NewRecorder()
	v.Middleware(http.NotFoundHandler()).ServeHTTP(w, signedRequest(internalSecret, now, "third"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("full memory: status %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if n := v.remembered(); n != 2 {
		t.Errorf("remembered %d, want the bound 2", n)
	}
	now = now.Add(DefaultWindow + time.Second)
	if _, err := v.Verify(signedRequest(internalSecret, now, "later")); err != nil {
		t.Errorf("Verify once the window passed: %v", err)
	}
}

func TestParseSignature(t *testing.T) {
	good := strings.Repeat("0f", 32)
	cases := []struct {
		header string
		ok     bool
	}{
		{"t=1,v1=" + good, true},
		{"v1=" + good + ",t=1", true},
		{"t=1, v1=" + good + ", v2=future", true},
		{"t=1,v1=" + good + ",v1=" + good, true},
		{"t=1", false},
		{"v1=" + good, false},
		{"t=-1,v1=" + good, false},
		{"t=+1,v1=" + good, false},
		{"t=1,t=2,v1=" + good, false},
		{"t=1,v1=" + good[:62], false},
		{"t=1,v1=" + strings.Repeat("zz", 32), false},
		{"t=1;v1=" + good, false},
		{"t=9999999999999,v1=" + good, false},
		{"", false},
	}
	for _, tc := range cases {
		_, err := parseSignature(tc.header)
		if (err == nil) != tc.ok {
			t.Errorf("parseSignature(%q) error = %v, want ok=%v", tc.header, err, tc.ok)
		}
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	c := &Connector{cfg: Config{Retries: RetryConfig{MaxAttempts: 20, Initial: 100 * time.Millisecond, Max: time.Second}}}
	for n := 1; n <= 20; n++ {
		bound := min(100*time.Millisecond<<(n-1), time.Second)
		for range 50 {
			d := c.backoff(n, 0)
			if d < bound/2 || d > bound {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, bound/2, bound)
			}
		}
	}
	if d := c.backoff(1, time.Hour); d != time.Second {
		t.Errorf("backoff with Retry-After 1h = %s, want the cap 1s", d)
	}
	if d := c.backoff(1, 700*time.Millisecond); d != 700*time.Millisecond {
		t.Errorf("backoff with Retry-After 700ms = %s, want 700ms", d)
	}
}
