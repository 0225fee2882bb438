package escalation_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors/webhook"
	"github.com/lethe-dev/lethe/escalation"
)

// The webhook posts the escalation as JSON signed so that the webhook
// connector's Verifier accepts it, and reports non-2xx answers.
func TestWebhookSignsWhatTheVerifierAccepts(t *testing.T) {
	secret := []byte("escalation-secret-of-32-bytes!!!")
	v := &webhook.Verifier{Secret: secret}
	var got lethe.Escalation
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		body, err := v.Verify(r)
		if err != nil {
			t.Errorf("verify: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("decode: %v", err)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	wh, err := escalation.NewWebhook(srv.URL+"/hooks/lethe?token=secret-token", secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := lethe.Escalation{Schema: lethe.SchemaEscalation, RequestID: "6f1c0000-0000-4000-8000-000000000001",
		Kind: lethe.EscalationOverdue, Point: "deadline", At: time.Date(2026, 12, 25, 10, 0, 0, 0, time.UTC),
		Open: []string{"orders"}}
	if err := wh.Notify(context.Background(), e); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if got.RequestID != e.RequestID || got.Kind != e.Kind || got.Open[0] != "orders" {
		t.Errorf("received %+v, want %+v", got, e)
	}
	fail = true
	err = wh.Notify(context.Background(), e)
	if err == nil || !strings.Contains(err.Error(), "502") || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("Notify to a failing endpoint = %v, want an error naming 502 and not the URL's token", err)
	}
	if _, err := escalation.NewWebhook(srv.URL, []byte("short"), nil); err == nil {
		t.Error("NewWebhook accepted a secret shorter than the verifier's minimum")
	}
	for _, bad := range []string{"", "ftp://x", "http://", "not a url"} {
		if _, err := escalation.NewWebhook(bad, nil, nil); err == nil {
			t.Errorf("NewWebhook(%q) accepted", bad)
		}
	}
}
