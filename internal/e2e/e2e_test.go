package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// startDemo registers the three demo systems through the API, seeds their
// rows and runs their connectors through the SDK.
func startDemo(t *testing.T, s *stack) demo.Subject {
	t.Helper()
	if err := demo.Migrate(s.ctx, s.DB); err != nil {
		t.Fatal(err)
	}
	subject, err := demo.Seed(s.ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	for _, sys := range demo.Systems() {
		s.putSystem(sys)
	}
	for name, h := range demo.Handlers(s.DB) {
		s.runConnector(name, h)
	}
	return subject
}

func subjectMap(ids []wire.Identifier) map[string]string {
	m := map[string]string{}
	for _, id := range ids {
		m[id.Type] = id.Value
	}
	return m
}

func remaining(t *testing.T, s *stack, system string, ids []wire.Identifier) int64 {
	t.Helper()
	n, err := demo.Count(s.ctx, s.DB, system, ids)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestErasureThroughPublicAPI registers three systems, erases a subject whose
// rows they hold, and sees every row gone and every system accounted for:
// the third system is reached only through an identifier the first revealed.
func TestErasureThroughPublicAPI(t *testing.T) {
	s := newStack(t, stackOptions{})
	subject := startDemo(t, s)
	all := subject.AllIdentifiers()
	before := map[string]int64{}
	for _, sys := range []string{demo.SystemAccounts, demo.SystemOrders, demo.SystemAnalytics} {
		before[sys] = remaining(t, s, sys, all)
		if before[sys] == 0 {
			t.Fatalf("seed left no rows in %s", sys)
		}
	}

	e := s.submit(subjectMap(subject.Identifiers()))
	if e.Status != lethe.RequestPending && e.Status != lethe.RequestRunning {
		t.Errorf("accepted request status = %s, want pending or running", e.Status)
	}
	if want := "erasure-" + e.ID; e.WorkflowID != want {
		t.Errorf("workflow_id = %q, want %q", e.WorkflowID, want)
	}
	done := s.await(e.ID, 60*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("status = %s, want completed (%s)", done.Status, describe(done))
	}
	if done.CompletedAt == nil {
		t.Error("completed_at is null on a completed request")
	}
	if len(done.Systems) != 3 {
		t.Fatalf("systems = %s, want accounts, analytics, orders", describe(done))
	}
	for sys, n := range before {
		p := systemByName(t, done, sys)
		if p.Status != lethe.SystemErased {
			t.Errorf("%s status = %s, want erased", sys, p.Status)
		}
		if p.Records != n {
			t.Errorf("%s records = %d, want %d (rows seeded)", sys, p.Records, n)
		}
		if p.Attempts != 1 {
			t.Errorf("%s attempts = %d, want 1", sys, p.Attempts)
		}
		if p.ConfirmedAt == nil {
			t.Errorf("%s confirmed_at is null", sys)
		}
		if got := remaining(t, s, sys, all); got != 0 {
			t.Errorf("%s still holds %d rows of the subject", sys, got)
		}
	}
	// The bystander seeded next to the subject is untouched.
	other := []wire.Identifier{{Type: demo.TypeUserID, Value: "u-demo-2"}}
	if got := remaining(t, s, demo.SystemOrders, other); got != 1 {
		t.Errorf("orders of another user = %d, want 1 untouched", got)
	}

	// A subject nobody knows: every system that erases by its types answers
	// not_found, and nothing is derived, so analytics is never asked.
	unknown := s.submit(map[string]string{"user_id": "u-nobody", "email": "nobody@example.com"})
	done = s.await(unknown.ID, 60*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("unknown subject status = %s, want completed (%s)", done.Status, describe(done))
	}
	if len(done.Systems) != 2 {
		t.Errorf("unknown subject systems = %s, want accounts and orders only", describe(done))
	}
	for _, p := range done.Systems {
		if p.Status != lethe.SystemNotFound || p.Records != 0 {
			t.Errorf("unknown subject %s = %s(%d), want not_found(0)", p.Name, p.Status, p.Records)
		}
	}

	// The list shows both, newest first, and the status filter works.
	r := s.do(http.MethodGet, "/v1/erasures?status=completed&limit=1", nil)
	var page struct {
		Items      []lethe.Erasure `json:"items"`
		NextCursor string          `json:"next_cursor"`
	}
	r.Decode(t, &page)
	if r.Status != http.StatusOK || len(page.Items) != 1 || page.Items[0].ID != unknown.ID || page.NextCursor == "" {
		t.Fatalf("first page = %d %s, want the newest request and a cursor", r.Status, r.Body)
	}
	r = s.do(http.MethodGet, "/v1/erasures?status=completed&limit=1&cursor="+page.NextCursor, nil)
	page.Items, page.NextCursor = nil, ""
	r.Decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != e.ID || page.NextCursor != "" {
		t.Fatalf("second page = %s, want the first request and no cursor", r.Body)
	}
}

// TestIdempotency: the same key and body answer the same request, a
// different body under the same key is a conflict, and 20 concurrent
// identical POSTs start exactly one workflow.
func TestIdempotency(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.putSystem(lethe.System{Name: "orders", Identifiers: []string{"user_id"}})
	s.runConnector("orders", notFoundHandler{})

	body := map[string]any{"subject": map[string]string{"user_id": "u-idem"}, "reason": "gdpr_art17"}
	first := s.do(http.MethodPost, "/v1/erasures", body, "Idempotency-Key", "key-1")
	again := s.do(http.MethodPost, "/v1/erasures", body, "Idempotency-Key", "key-1")
	if first.Status != http.StatusAccepted {
		t.Fatalf("first POST = %d %s", first.Status, first.Body)
	}
	if again.Status != http.StatusOK && again.Status != http.StatusAccepted {
		t.Fatalf("repeated POST = %d %s, want 200 or 202", again.Status, again.Body)
	}
	var a, b lethe.Erasure
	first.Decode(t, &a)
	again.Decode(t, &b)
	if a.ID != b.ID {
		t.Errorf("same key and body gave ids %s and %s", a.ID, b.ID)
	}
	other := map[string]any{"subject": map[string]string{"user_id": "u-someone-else"}, "reason": "gdpr_art17"}
	conflict := s.do(http.MethodPost, "/v1/erasures", other, "Idempotency-Key", "key-1")
	if conflict.Status != http.StatusConflict || conflict.ErrorCode() == "" {
		t.Errorf("same key, other body = %d %s, want 409 with a code", conflict.Status, conflict.Body)
	}

	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.do(http.MethodPost, "/v1/erasures", map[string]any{"subject": map[string]string{"user_id": "u-race"}}, "Idempotency-Key", "key-race")
			if r.Status != http.StatusAccepted && r.Status != http.StatusOK {
				t.Errorf("concurrent POST %d = %d %s", i, r.Status, r.Body)
				return
			}
			var e lethe.Erasure
			r.Decode(t, &e)
			ids[i] = e.ID
		}()
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if ids[i] != ids[0] {
			t.Fatalf("concurrent POSTs answered ids %s and %s", ids[0], ids[i])
		}
	}
	var rows int
	// The key itself is stored as a keyed digest: a client may use something personal as its key.
	keyDigest := s.Digester.Sum("idempotency_key", "key-race")
	if err := s.DB.QueryRowContext(s.ctx, `SELECT count(*) FROM erasure_requests WHERE idempotency_key = $1`, keyDigest).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("erasure_requests rows for the key = %d, want 1", rows)
	}
	s.await(ids[0], 60*time.Second)
	workflows := countWorkflows(t, s, fmt.Sprintf("WorkflowId = 'erasure-%s'", ids[0]))
	if workflows != 1 {
		t.Errorf("workflow executions for the request = %d, want 1", workflows)
	}
	// Two requests were created in all (key-1 and key-race): two workflows.
	if total := countWorkflows(t, s, "WorkflowType = 'ErasureWorkflow'"); total != 2 {
		t.Errorf("erasure workflows in the namespace = %d, want 2", total)
	}
}

// countWorkflows counts the executions matching a visibility query, waiting
// briefly for visibility to catch up.
func countWorkflows(t *testing.T, s *stack, query string) int {
	t.Helper()
	return listCount(t, s, query, 50)
}

// countWorkflowsNow counts without waiting: for queries expected to match nothing.
func countWorkflowsNow(t *testing.T, s *stack, query string) int {
	t.Helper()
	return listCount(t, s, query, 1)
}

func listCount(t *testing.T, s *stack, query string, tries int) int {
	t.Helper()
	var n int
	for range tries {
		n = 0
		var token []byte
		for {
			resp, err := s.Temporal.ListWorkflow(s.ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: s.Namespace, Query: query, NextPageToken: token})
			if err != nil {
				t.Fatalf("list workflows %q: %v", query, err)
			}
			n += len(resp.Executions)
			token = resp.NextPageToken
			if len(token) == 0 {
				break
			}
		}
		if n > 0 {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// notFoundHandler holds nothing: every command is answered not_found.
type notFoundHandler struct{}

func (notFoundHandler) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
}

// TestMalformedRequestsWriteNothing sends malformed requests to the real
// stack and checks each answer's status and code, then that no table gained
// a row and no workflow started.
func TestMalformedRequestsWriteNothing(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.putSystem(lethe.System{Name: "orders", Identifiers: []string{"user_id"}})
	before := tableCounts(t, s)

	big := `{"subject":{"user_id":"` + strings.Repeat("x", 1<<20) + `"}}`
	cases := []struct {
		name, method, path, body, contentType string
		header                                []string
		status                                int
		code                                  string
	}{
		{"bad json", "POST", "/v1/erasures", `{"subject":`, "application/json", nil, 400, "invalid_json"},
		{"unknown field", "POST", "/v1/erasures", `{"subject":{"user_id":"u"},"colour":"red"}`, "application/json", nil, 400, "unknown_field"},
		{"empty subject", "POST", "/v1/erasures", `{"subject":{}}`, "application/json", nil, 400, "invalid_subject"},
		{"no subject", "POST", "/v1/erasures", `{"reason":"x"}`, "application/json", nil, 400, "invalid_subject"},
		{"empty value", "POST", "/v1/erasures", `{"subject":{"user_id":""}}`, "application/json", nil, 400, "invalid_subject"},
		{"number value", "POST", "/v1/erasures", `{"subject":{"user_id":42}}`, "application/json", nil, 400, "invalid_subject"},
		{"bad identifier type", "POST", "/v1/erasures", `{"subject":{"User-ID":"u"}}`, "application/json", nil, 400, "invalid_subject"},
		{"oversized body", "POST", "/v1/erasures", big, "application/json", nil, 413, "body_too_large"},
		{"wrong content type", "POST", "/v1/erasures", `{"subject":{"user_id":"u"}}`, "text/plain", nil, 415, "unsupported_media_type"},
		{"bad idempotency key", "POST", "/v1/erasures", `{"subject":{"user_id":"u"}}`, "application/json", []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, ""},
		{"bad system name", "PUT", "/v1/systems/Orders!", `{"identifiers":["user_id"]}`, "application/json", nil, 400, "invalid_name"},
		{"system without identifiers", "PUT", "/v1/systems/billing", `{"identifiers":[]}`, "application/json", nil, 400, ""},
		{"bad confirm_within", "PUT", "/v1/systems/billing", `{"identifiers":["user_id"],"confirm_within":"soon"}`, "application/json", nil, 400, "invalid_duration"},
		{"unknown system field", "PUT", "/v1/systems/billing", `{"identifiers":["user_id"],"team":"x"}`, "application/json", nil, 400, "unknown_field"},
		{"bad cursor", "GET", "/v1/erasures?cursor=!!!", "", "", nil, 400, "invalid_cursor"},
		{"bad limit", "GET", "/v1/erasures?limit=500", "", "", nil, 400, ""},
		{"unknown status", "GET", "/v1/erasures?status=done", "", "", nil, 400, ""},
		{"unknown erasure", "GET", "/v1/erasures/6f1c2a3b-0000-4000-8000-000000000000", "", "", nil, 404, "erasure_not_found"},
		{"cancel unknown erasure", "POST", "/v1/erasures/6f1c2a3b-0000-4000-8000-000000000000/cancel", "", "", nil, 404, "erasure_not_found"},
		{"unknown system", "GET", "/v1/systems/nosuch", "", "", nil, 404, "system_not_found"},
		{"retire unknown system", "DELETE", "/v1/systems/nosuch", "", "", nil, 404, "system_not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.doRaw(tc.method, tc.path, tc.body, tc.contentType, tc.header...)
			if r.Status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", r.Status, tc.status, truncate(r.Body))
			}
			code := r.ErrorCode()
			if code == "" {
				t.Fatalf("no error code in %s", truncate(r.Body))
			}
			if tc.code != "" && code != tc.code {
				t.Errorf("code = %q, want %q", code, tc.code)
			}
		})
	}
	after := tableCounts(t, s)
	for table, n := range after {
		if n != before[table] {
			t.Errorf("table %s went from %d to %d rows", table, before[table], n)
		}
	}
	if n := countWorkflowsNow(t, s, "WorkflowType = 'ErasureWorkflow'"); n != 0 {
		t.Errorf("%d workflows started by malformed requests", n)
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// tableCounts counts the rows of every table in Lethe's schema.
func tableCounts(t *testing.T, s *stack) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, table := range letheTables(t, s) {
		var n int
		if err := s.DB.QueryRowContext(s.ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts[table] = n
	}
	return counts
}

// letheTables lists the tables of Lethe's own schema (public).
func letheTables(t *testing.T, s *stack) []string {
	t.Helper()
	out := tables(t, s, `table_schema = 'public'`, `quote_ident(table_name)`)
	if len(out) < 4 {
		t.Fatalf("found only tables %v in schema public", out)
	}
	return out
}

// tables lists the base tables that where selects, named by name.
func tables(t *testing.T, s *stack, where, name string) []string {
	t.Helper()
	rows, err := s.DB.QueryContext(s.ctx, `SELECT `+name+` FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND `+where+` ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSettlingRequestShowsLiveProgress: while a request settles, its ledger
// row is still the one the API created, yet GET /v1/erasures/{id} answers
// where the workflow stands: running, with its command out to a system
// that has not confirmed.
func TestSettlingRequestShowsLiveProgress(t *testing.T) {
	s := newStack(t, stackOptions{Policy: workflows.Policy{Settle: time.Hour}})
	s.putSystem(lethe.System{Name: "silent", Identifiers: []string{"user_id"}, Owner: "e2e"})
	e := s.submit(map[string]string{"user_id": "u-settling"})

	deadline := time.Now().Add(30 * time.Second)
	var got lethe.Erasure
	for {
		s.do(http.MethodGet, "/v1/erasures/"+e.ID, nil).Decode(t, &got)
		if got.Status == lethe.RequestRunning && len(got.Systems) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request still %s with %d systems after 30 s", got.Status, len(got.Systems))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := got.Systems[0]; p.Name != "silent" || p.Status != lethe.SystemDispatched || p.Attempts != 1 {
		t.Errorf("system %+v, want silent dispatched once", p)
	}
	ledger, err := s.Store.GetErasure(s.ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ledger.Status != lethe.RequestPending || len(ledger.Systems) != 0 {
		t.Errorf("ledger shows %s with %d systems while the request settles, want pending with none",
			ledger.Status, len(ledger.Systems))
	}
}
