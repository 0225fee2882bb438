package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-dev/lethe/auth"
	"github.com/lethe-dev/lethe/registry"
)

// doAs serves one request with a credential standing for p.
func (h *harness) doAs(t *testing.T, p auth.Principal, method, path, body string) int {
	t.Helper()
	token := "lethe_as-" + strings.NewReplacer(":", "-", "@", "-").Replace(p.Subject)
	h.creds.principals[token] = p
	return h.do(t, req{method: method, path: path, body: body,
		headers: map[string]string{"Authorization": "Bearer " + token}}).status
}

func TestRegistryWritesNameTheirActor(t *testing.T) {
	h := newHarness(t)
	writer := auth.Principal{Subject: "token:ci", Kind: auth.KindToken, Scopes: []auth.Scope{auth.SystemsWrite}}
	admin := auth.Principal{Subject: "alice@example.org", Kind: auth.KindOIDC, Scopes: []auth.Scope{auth.SystemsWrite, auth.SystemsAdmin}}
	body := `{"identifiers":["user_id"]}`

	for _, p := range []auth.Principal{writer, admin} {
		if code := h.doAs(t, p, "PUT", "/v1/systems/orders", body); code != http.StatusCreated && code != http.StatusOK {
			t.Fatalf("PUT as %q = %d", p.Subject, code)
		}
	}
	want := []registry.SystemWrite{
		{Actor: "token:ci"},
		{Actor: "alice@example.org", MayChangeTopic: true},
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
	svc := auth.Principal{Subject: "token:support", Kind: auth.KindToken, Scopes: []auth.Scope{auth.ErasuresWrite, auth.ErasuresAdmin}}
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
