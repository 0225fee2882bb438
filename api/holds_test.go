package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// registryHarness is the API over a real registry on a fresh database, with
// Temporal and Kafka faked and the clock at testNow.
func registryHarness(t *testing.T) (*harness, *registry.Store, *sql.DB) {
	t.Helper()
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	store.Now = func() time.Time { return testNow }
	h := newHarnessWith(t, func(c *api.Config) { c.Store = store })
	return h, store, db
}

// Holds are placed by subject (digested, never stored), listed, read and
// lifted; lifting wakes the open requests the hold kept systems of.
func TestHoldsAgainstRegistry(t *testing.T) {
	h, store, db := registryHarness(t)
	ctx := context.Background()
	if res := h.putSystem(t, "orders", `{"identifiers":["email"]}`); res.status != http.StatusCreated {
		t.Fatalf("PUT system = %s", describe(res))
	}
	body := `{"subject":{"email":"` + canary + `"},"system":"orders","basis":"Art. 17(3)(e): litigation 2026-114","expires_at":"2027-06-01T00:00:00Z"}`
	res := h.do(t, req{method: "PUT", path: "/v1/holds/case-114", body: body})
	if res.status != http.StatusCreated {
		t.Fatalf("PUT hold = %s, want 201", describe(res))
	}
	var hold lethe.Hold
	res.decode(t, &hold)
	if !hold.Active || hold.System != "orders" || !slices.Equal(hold.SubjectTypes, []string{"email"}) ||
		hold.ExpiresAt == nil || !hold.ExpiresAt.Equal(time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("hold = %+v", hold)
	}
	if again := h.do(t, req{method: "PUT", path: "/v1/holds/case-114", body: body}); again.status != http.StatusOK {
		t.Errorf("PUT again = %s, want 200", describe(again))
	}
	if got := h.do(t, req{method: "GET", path: "/v1/holds/case-114"}); got.status != http.StatusOK ||
		!strings.Contains(string(got.body), `"basis":"Art. 17(3)(e): litigation 2026-114"`) {
		t.Errorf("GET hold = %s", describe(got))
	}

	// A request for the same subject is held there; the hold is recorded
	// against it as the worker's plan would.
	e := h.createErasure(t, `{"subject":{"email":"`+canary+`"}}`)
	ms, err := store.MatchTargets(ctx, registry.MatchQuery{RequestID: e.ID, Types: []string{"email"},
		Subject: []lethe.SubjectDigest{{Type: "email", Digest: h.digester.Sum("email", canary)}}, At: testNow})
	if err != nil || len(ms) != 1 || ms[0].Hold == nil || ms[0].Hold.ID != "case-114" {
		t.Fatalf("MatchTargets = %+v, %v; want orders held by case-114", ms, err)
	}
	res = h.do(t, req{method: "DELETE", path: "/v1/holds/case-114"})
	res.decode(t, &hold)
	if res.status != http.StatusOK || hold.Active || hold.LiftedAt == nil {
		t.Fatalf("DELETE = %s, want 200 with the hold lifted", describe(res))
	}
	h.engine.mu.Lock()
	lifts := slices.Clone(h.engine.lifts)
	h.engine.mu.Unlock()
	if !slices.Equal(lifts, []string{e.ID}) {
		t.Errorf("woken requests %v, want %s", lifts, e.ID)
	}
	if list := h.do(t, req{method: "GET", path: "/v1/holds"}); list.status != http.StatusOK || string(list.body) != "{\"items\":[]}\n" {
		t.Errorf("active holds = %s, want none", describe(list))
	}
	if list := h.do(t, req{method: "GET", path: "/v1/holds?all=true"}); !strings.Contains(string(list.body), `"id":"case-114"`) {
		t.Errorf("all holds = %s, want case-114", describe(list))
	}

	for _, tc := range []struct {
		method, path, body, code string
		status                   int
	}{
		{"PUT", "/v1/holds/bad%20id", body, "invalid_hold_id", 400},
		{"PUT", "/v1/holds/h1", `{"subject":{},"basis":"x"}`, "invalid_subject", 400},
		{"PUT", "/v1/holds/h1", `{"subject":{"email":"a@b"}}`, "invalid_basis", 400},
		{"PUT", "/v1/holds/h1", `{"subject":{"email":"a@b"},"basis":"x","expires_at":"2020-01-01T00:00:00Z"}`, "invalid_expiry", 400},
		{"PUT", "/v1/holds/h1", `{"subject":{"email":"a@b"},"basis":"x","system":"Bad"}`, "invalid_system", 400},
		{"PUT", "/v1/holds/h1", `{"subject":{"email":"a@b"},"basis":"x","until":"never"}`, "unknown_field", 400},
		{"GET", "/v1/holds/nope", "", "hold_not_found", 404},
		{"DELETE", "/v1/holds/nope", "", "hold_not_found", 404},
		{"GET", "/v1/holds?all=maybe", "", "invalid_all", 400},
	} {
		res := h.do(t, req{method: tc.method, path: tc.path, body: tc.body})
		if res.status != tc.status || res.errorCode(t) != tc.code {
			t.Errorf("%s %s = %s, want %d %s", tc.method, tc.path, describe(res), tc.status, tc.code)
		}
	}
	assertNotInDatabase(t, db, canary)
	if strings.Contains(h.logs.String(), canary) {
		t.Error("log contains the identifier value")
	}
}

// An extension answers the request with its new dates, tells the workflow,
// and refuses a second one; the list filters overdue requests.
func TestExtendAgainstRegistry(t *testing.T) {
	h, store, _ := registryHarness(t)
	e := h.createErasure(t, `{"subject":{"user_id":"u-1"},"policy":"ccpa"}`)
	if want := testNow.Truncate(time.Microsecond).Add(45 * 24 * time.Hour); !e.Deadline.Equal(want) ||
		!e.Target.Equal(want.Add(-lethe.DefaultTargetBefore)) {
		t.Fatalf("ccpa request deadline %v target %v, want %v and two days before", e.Deadline, e.Target, want)
	}
	res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/extend",
		body: `{"by":"720h","reason":"complex: 40 systems"}`})
	var got lethe.Erasure
	res.decode(t, &got)
	if res.status != http.StatusOK || !got.Deadline.Equal(e.Deadline.Add(720*time.Hour)) || got.ExtendedAt == nil ||
		got.ExtensionReason != "complex: 40 systems" {
		t.Fatalf("extend = %s", describe(res))
	}
	h.engine.mu.Lock()
	told := h.engine.extends[e.ID]
	h.engine.mu.Unlock()
	if !told.Deadline.Equal(got.Deadline) || !told.Target.Equal(got.Target) {
		t.Errorf("workflow told %+v, want the new dates", told)
	}
	for _, tc := range []struct{ body, code string }{
		{`{"by":"720h","reason":"again"}`, "already_extended"},
		{`{"by":"-1h","reason":"x"}`, "invalid_extension"},
		{`{"by":"1h"}`, "invalid_reason"},
		{`{"by":"tomorrow","reason":"x"}`, "invalid_json"},
	} {
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/extend", body: tc.body})
		if res.errorCode(t) != tc.code {
			t.Errorf("extend %s = %s, want %s", tc.body, describe(res), tc.code)
		}
	}
	if res := h.do(t, req{method: "POST", path: "/v1/erasures", body: `{"subject":{"user_id":"u-2"},"policy":"hipaa"}`}); res.errorCode(t) != "unknown_policy" {
		t.Errorf("unknown policy = %s, want unknown_policy", describe(res))
	}
	if err := store.ApplyLedger(context.Background(), e.ID, lethe.LedgerDelta{Overdue: true}); err != nil {
		t.Fatal(err)
	}
	h.createErasure(t, `{"subject":{"user_id":"u-3"}}`)
	var list struct{ Items []lethe.Erasure }
	res = h.do(t, req{method: "GET", path: "/v1/erasures?overdue=true"})
	res.decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != e.ID {
		t.Errorf("overdue list = %s, want only %s", describe(res), e.ID)
	}
	if res := h.do(t, req{method: "GET", path: "/v1/erasures?overdue=yes"}); res.errorCode(t) != "invalid_overdue" {
		t.Errorf("overdue=yes = %s, want invalid_overdue", describe(res))
	}
}
