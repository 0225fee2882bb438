package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// retryHarness is the API over a real registry with the workflow engine
// faked, and a way to end requests as their workflows would.
type retryHarness struct {
	*harness
	store *registry.Store
}

func newRetryHarness(t *testing.T) retryHarness {
	t.Helper()
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	h := newHarnessWith(t, func(c *api.Config) { c.Store = store })
	return retryHarness{harness: h, store: store}
}

// failedRequest creates a request through the API and ends it with each
// system in its status, failed overall when one failed.
func (h retryHarness) failedRequest(t *testing.T, systems map[string]lethe.SystemStatus) string {
	t.Helper()
	res := h.do(t, req{method: "POST", path: "/v1/erasures", body: `{"subject":{"email":"` + canary + `"}}`})
	if res.status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures = %s", describe(res))
	}
	var e lethe.Erasure
	res.decode(t, &e)
	status := lethe.RequestCompleted
	var progress []lethe.SystemProgress
	for name, st := range systems {
		progress = append(progress, lethe.SystemProgress{Name: name, Status: st, Attempts: 5})
		if st == lethe.SystemFailed {
			status = lethe.RequestFailed
		}
	}
	if err := h.store.ApplyLedger(context.Background(), e.ID, lethe.LedgerDelta{Status: status, Systems: progress}); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

func TestRetryErasureRoute(t *testing.T) {
	h := newRetryHarness(t)
	id := h.failedRequest(t, map[string]lethe.SystemStatus{"crm": lethe.SystemFailed, "orders": lethe.SystemErased})

	res := h.do(t, req{method: "POST", path: "/v1/erasures/" + id + "/retry"})
	if res.status != http.StatusAccepted {
		t.Fatalf("retry = %s, want 202", describe(res))
	}
	var e lethe.Erasure
	res.decode(t, &e)
	if e.Status != lethe.RequestRunning {
		t.Errorf("retried request answered %s, want running", e.Status)
	}
	orders := h.engine.retries[id]
	if len(orders) != 1 || orders[0].Actor != "token:all" || !slices.Equal(orders[0].Systems, []string{"crm"}) {
		t.Errorf("the workflow was told %+v, want one order by token:all for crm", orders)
	}
	audit, err := h.store.Audit(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if last := audit[len(audit)-1]; last.Kind != lethe.AuditRetryRequested || last.Actor != "token:all" {
		t.Errorf("last audit event %+v, want retry_requested by token:all", last)
	}

	// Nothing failed any more.
	res = h.do(t, req{method: "POST", path: "/v1/erasures/" + id + "/retry"})
	if res.status != http.StatusConflict || res.errorCode(t) != "nothing_to_retry" {
		t.Errorf("second retry = %s, want 409 nothing_to_retry", describe(res))
	}
	res = h.do(t, req{method: "POST", path: "/v1/erasures/6f1c0e9a-2b7d-4c1e-9a35-0d4f2b8c7e11/retry"})
	if res.status != http.StatusNotFound || res.errorCode(t) != "erasure_not_found" {
		t.Errorf("retry of an unknown request = %s, want 404 erasure_not_found", describe(res))
	}
	res = h.do(t, req{method: "POST", path: "/v1/erasures/" + id + "/retry", body: `{"systems":["Not A Name"]}`})
	if res.status != http.StatusBadRequest || res.errorCode(t) != "invalid_system" {
		t.Errorf("retry naming a bad system = %s, want 400 invalid_system", describe(res))
	}
}

func TestRetryNamedSystemsOnly(t *testing.T) {
	h := newRetryHarness(t)
	id := h.failedRequest(t, map[string]lethe.SystemStatus{"crm": lethe.SystemFailed, "billing": lethe.SystemFailed})
	res := h.do(t, req{method: "POST", path: "/v1/erasures/" + id + "/retry", body: `{"systems":["billing"]}`})
	if res.status != http.StatusAccepted {
		t.Fatalf("retry = %s, want 202", describe(res))
	}
	var e lethe.Erasure
	res.decode(t, &e)
	for _, p := range e.Systems {
		want := map[string]lethe.SystemStatus{"billing": lethe.SystemDispatched, "crm": lethe.SystemFailed}[p.Name]
		if p.Status != want {
			t.Errorf("%s is %s after retrying billing, want %s", p.Name, p.Status, want)
		}
	}
}

func TestRetryRefusedByTheWorkflowChangesNothing(t *testing.T) {
	h := newRetryHarness(t)
	id := h.failedRequest(t, map[string]lethe.SystemStatus{"crm": lethe.SystemFailed})
	h.engine.retryErr = lethe.Errorf(lethe.KindConflict, "workflow_gone", "the request's workflow is past retention")
	res := h.do(t, req{method: "POST", path: "/v1/erasures/" + id + "/retry"})
	if res.status != http.StatusConflict || res.errorCode(t) != "workflow_gone" {
		t.Fatalf("retry = %s, want 409 workflow_gone", describe(res))
	}
	e, err := h.store.GetErasure(context.Background(), id)
	if err != nil || e.Status != lethe.RequestFailed {
		t.Errorf("after a refused retry the request is %s (%v), want failed", e.Status, err)
	}
}

func TestBulkRetry(t *testing.T) {
	h := newRetryHarness(t)
	crm1 := h.failedRequest(t, map[string]lethe.SystemStatus{"crm": lethe.SystemFailed})
	crm2 := h.failedRequest(t, map[string]lethe.SystemStatus{"crm": lethe.SystemFailed, "billing": lethe.SystemFailed})
	billing := h.failedRequest(t, map[string]lethe.SystemStatus{"billing": lethe.SystemFailed})
	h.failedRequest(t, map[string]lethe.SystemStatus{"crm": lethe.SystemErased})

	key := map[string]string{"Idempotency-Key": "incident-42"}
	res := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: `{"system":"crm"}`, headers: key})
	if res.status != http.StatusOK {
		t.Fatalf("bulk retry = %s, want 200", describe(res))
	}
	var got struct {
		Retried    int      `json:"retried"`
		RequestIDs []string `json:"request_ids"`
		More       bool     `json:"more"`
	}
	res.decode(t, &got)
	want := []string{crm1, crm2}
	slices.Sort(want)
	if got.Retried != 2 || !slices.Equal(got.RequestIDs, want) || got.More {
		t.Fatalf("bulk retry answered %s, want the two requests where crm failed", res.body)
	}
	for _, id := range want {
		if o := h.engine.retries[id]; len(o) != 1 || !slices.Equal(o[0].Systems, []string{"crm"}) {
			t.Errorf("request %s: orders %+v, want one for crm only", id, o)
		}
	}
	if n := len(h.engine.retries[billing]); n != 0 {
		t.Errorf("billing's request got %d orders from a retry of crm", n)
	}

	again := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: `{"system":"crm"}`, headers: key})
	if again.status != http.StatusOK || string(again.body) != string(res.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("repeat = %s (replayed %q), want the first answer again", describe(again), again.header.Get("Idempotent-Replayed"))
	}
	if n := h.engine.retryCount(); n != 2 {
		t.Errorf("the repeat told workflows again: %d orders in all, want 2", n)
	}
	other := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: `{"system":"billing"}`, headers: key})
	if other.status != http.StatusConflict || other.errorCode(t) != "idempotency_conflict" {
		t.Errorf("same key, other filter = %s, want 409 idempotency_conflict", describe(other))
	}

	// The cap, and paging past it.
	h.failedRequest(t, map[string]lethe.SystemStatus{"mail": lethe.SystemFailed})
	h.failedRequest(t, map[string]lethe.SystemStatus{"mail": lethe.SystemFailed})
	page := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: `{"system":"mail","limit":1}`})
	var first struct {
		Retried int    `json:"retried"`
		More    bool   `json:"more"`
		Last    string `json:"last"`
	}
	page.decode(t, &first)
	if page.status != http.StatusOK || first.Retried != 1 || !first.More || first.Last == "" {
		t.Fatalf("limited bulk retry = %s, want one retried and more", describe(page))
	}
	body, _ := json.Marshal(map[string]any{"system": "mail", "after": first.Last})
	rest := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: string(body)})
	var second struct {
		Retried int  `json:"retried"`
		More    bool `json:"more"`
	}
	rest.decode(t, &second)
	if rest.status != http.StatusOK || second.Retried != 1 || second.More {
		t.Errorf("next page = %s, want the other one and no more", describe(rest))
	}

	// crm2 runs again, with billing still failed: a retry of running requests finds it.
	running := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: `{"status":"running","system":"billing"}`})
	var third struct {
		RequestIDs []string `json:"request_ids"`
	}
	running.decode(t, &third)
	if running.status != http.StatusOK || !slices.Equal(third.RequestIDs, []string{crm2}) {
		t.Errorf("retry of running requests = %s, want %s", describe(running), crm2)
	}

	for _, tc := range []struct{ body, code string }{
		{`{"status":"completed"}`, "invalid_status"},
		{`{"limit":101}`, "invalid_limit"},
		{`{"system":"Bad Name"}`, "invalid_system"},
		{`{"after":"x"}`, "invalid_after"},
		{`{"systems":["crm"]}`, "unknown_field"},
	} {
		res := h.do(t, req{method: "POST", path: "/v1/erasures/retry", body: tc.body})
		if res.status != http.StatusBadRequest || res.errorCode(t) != tc.code {
			t.Errorf("bulk retry %s = %s, want 400 %s", tc.body, describe(res), tc.code)
		}
	}
}
