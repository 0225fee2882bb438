package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
)

// doAs serves one request whose context carries p, as the authentication
// middleware leaves it; a zero p means no principal at all.
func (h *harness) doAs(t *testing.T, p auth.Principal, method, path, body string) int {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p.Subject != "" {
		ctx = auth.NewContext(ctx, p)
	}
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, r.WithContext(ctx))
	return w.Code
}

func TestRegistryWritesNameTheirActor(t *testing.T) {
	h := newHarness(t)
	writer := auth.Principal{Subject: "token:ci", Kind: auth.KindToken, Scopes: []auth.Scope{auth.SystemsWrite}}
	admin := auth.Principal{Subject: "alice@example.org", Kind: auth.KindOIDC, Scopes: []auth.Scope{auth.SystemsAdmin}}
	body := `{"identifiers":["user_id"]}`

	for _, p := range []auth.Principal{writer, admin, {}} {
		if code := h.doAs(t, p, "PUT", "/v1/systems/orders", body); code != http.StatusCreated && code != http.StatusOK {
			t.Fatalf("PUT as %q = %d", p.Subject, code)
		}
	}
	want := []registry.SystemWrite{
		{Actor: "token:ci"},
		{Actor: "alice@example.org", MayChangeTopic: true},
		{}, // no principal: no actor, and no topic change
	}
	if !slices.Equal(h.store.sysWrites, want) {
		t.Errorf("PutSystem got %+v, want %+v", h.store.sysWrites, want)
	}
	if code := h.doAs(t, admin, "DELETE", "/v1/systems/orders", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE = %d, want 204", code)
	}
	if !slices.Equal(h.store.retiredBy, []string{"alice@example.org"}) {
		t.Errorf("RetireSystem got actors %q, want the admin's", h.store.retiredBy)
	}
}

func TestErasureWritesNameTheirActor(t *testing.T) {
	h := newHarness(t)
	svc := auth.Principal{Subject: "token:support", Kind: auth.KindToken, Scopes: []auth.Scope{auth.ErasuresWrite}}
	if code := h.doAs(t, svc, "POST", "/v1/erasures",
		`{"subject":{"user_id":"u-1"},"reason":"gdpr_art17","requested_by":"ticket-1"}`); code != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures = %d, want 202", code)
	}
	if len(h.store.created) != 1 || h.store.created[0].CreatedBy != "token:support" {
		t.Fatalf("CreateErasure got %+v, want created_by token:support", h.store.created)
	}
	id := h.store.created[0].ID
	h.doAs(t, svc, "POST", "/v1/erasures/"+id+"/cancel", "")
	if !slices.Equal(h.store.cancelBy, []string{"token:support"}) {
		t.Errorf("cancel audited with actors %q, want token:support", h.store.cancelBy)
	}
	if _, cancels := h.engine.counts(); cancels != 1 {
		t.Errorf("engine got %d cancels, want 1 after the audit", cancels)
	}
}
