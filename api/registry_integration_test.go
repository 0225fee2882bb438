package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

// The real store is what the API is written against.
var _ api.Store = (*registry.Store)(nil)

// TestAgainstRegistry runs the API over a real registry.Store on a fresh
// PostgreSQL database, with Temporal and Kafka faked: what the API hands the
// store is accepted, errors keep their codes, and nothing the database holds
// afterwards contains the identifier value.
func TestAgainstRegistry(t *testing.T) {
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	// Each request a second after the last, so newest-first is unambiguous.
	var mu sync.Mutex
	tick := testNow
	h := newHarnessWith(t, func(c *api.Config) {
		c.Store = store
		c.Now = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			tick = tick.Add(time.Second)
			return tick
		}
	})

	if res := h.putSystem(t, "orders", `{"identifiers":["user_id","email"],"produces":["stripe_customer_id"]}`); res.status != http.StatusCreated {
		t.Fatalf("PUT = %s, want 201", describe(res))
	}
	if res := h.putSystem(t, "orders", `{"identifiers":["user_id"],"confirm_within":"2h"}`); res.status != http.StatusOK {
		t.Fatalf("second PUT = %s, want 200", describe(res))
	}
	res := h.do(t, req{method: "GET", path: "/v1/systems/orders"})
	var sys lethe.System
	res.decode(t, &sys)
	if res.status != http.StatusOK || time.Duration(sys.ConfirmWithin) != 2*time.Hour || sys.Topic != "lethe.erasure.orders" {
		t.Fatalf("GET = %s", describe(res))
	}
	if res := h.do(t, req{method: "DELETE", path: "/v1/systems/orders"}); res.status != http.StatusNoContent {
		t.Fatalf("DELETE = %s, want 204", describe(res))
	}
	if res := h.do(t, req{method: "GET", path: "/v1/systems/orders"}); res.status != http.StatusNotFound || res.errorCode(t) != "system_not_found" {
		t.Fatalf("GET after DELETE = %s, want 404", describe(res))
	}

	key := map[string]string{"Idempotency-Key": "ticket-991"}
	body := `{"subject":{"email":"` + canary + `","user_id":"u-1"},"reason":"gdpr_art17"}`
	first := h.do(t, req{method: "POST", path: "/v1/erasures", body: body, headers: key})
	if first.status != http.StatusAccepted {
		t.Fatalf("POST = %s, want 202", describe(first))
	}
	var e lethe.Erasure
	first.decode(t, &e)
	again := h.do(t, req{method: "POST", path: "/v1/erasures", body: body, headers: key})
	var e2 lethe.Erasure
	again.decode(t, &e2)
	if again.status != http.StatusOK || e2.ID != e.ID {
		t.Fatalf("repeat = %s, want 200 with id %s", describe(again), e.ID)
	}
	other := h.do(t, req{method: "POST", path: "/v1/erasures", headers: key, body: `{"subject":{"user_id":"u-2"}}`})
	if other.status != http.StatusConflict || other.errorCode(t) != "idempotency_conflict" {
		t.Fatalf("other body = %s, want 409 idempotency_conflict", describe(other))
	}
	if !e.CreatedAt.Equal(h.engine.starts[0].CreatedAt) || !e.Deadline.Equal(h.engine.starts[0].Deadline) {
		t.Errorf("ledger times %v/%v differ from the workflow's %v/%v",
			e.CreatedAt, e.Deadline, h.engine.starts[0].CreatedAt, h.engine.starts[0].Deadline)
	}

	for range 2 {
		h.createErasure(t, `{"subject":{"user_id":"u-3"}}`)
	}
	res = h.do(t, req{method: "GET", path: "/v1/erasures?limit=2"})
	var page struct {
		Items      []lethe.Erasure `json:"items"`
		NextCursor string          `json:"next_cursor"`
	}
	res.decode(t, &page)
	if res.status != http.StatusOK || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("first page = %s", describe(res))
	}
	res = h.do(t, req{method: "GET", path: "/v1/erasures?limit=2&cursor=" + page.NextCursor})
	page.Items, page.NextCursor = nil, ""
	res.decode(t, &page)
	if res.status != http.StatusOK || len(page.Items) != 1 || page.Items[0].ID != e.ID || page.NextCursor != "" {
		t.Fatalf("last page = %s, want the first request and no cursor", describe(res))
	}
	if res := h.do(t, req{method: "GET", path: "/v1/erasures?cursor=not-a-cursor"}); res.status != http.StatusBadRequest || res.errorCode(t) != "invalid_cursor" {
		t.Fatalf("bad cursor = %s, want 400 invalid_cursor", describe(res))
	}

	// The workflow records the cancel in the ledger as it closes.
	h.engine.onCancel = func(id string) error {
		now := testNow.Add(time.Minute)
		return store.ApplyLedger(context.Background(), id, lethe.LedgerDelta{
			Status: lethe.RequestCanceled, CompletedAt: &now,
			Events: []lethe.AuditEvent{{RequestID: id, Kind: lethe.AuditCanceled, At: now}},
		})
	}
	res = h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
	var canceled lethe.Erasure
	res.decode(t, &canceled)
	if res.status != http.StatusOK || canceled.Status != lethe.RequestCanceled {
		t.Fatalf("cancel = %s, want 200 canceled", describe(res))
	}
	if res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"}); res.status != http.StatusConflict {
		t.Fatalf("second cancel = %s, want 409", describe(res))
	}

	assertNotInDatabase(t, db, canary)
	if strings.Contains(h.logs.String(), canary) {
		t.Errorf("log contains the identifier value")
	}
}

// TestSuppressionsAgainstRegistry takes requests through the API into a
// real registry, finishes them as the workflow would, and reads the
// suppression list through the API and through the connector SDK: the
// digests are those of the values submitted, under the API's key, no value
// is answered or stored, a dry run is not listed, a later sync brings only
// the new request, and ReErase hands a restored identifier to the handler
// as a command of the request that erased it.
func TestSuppressionsAgainstRegistry(t *testing.T) {
	db, _ := testenv.Postgres(t)
	store := registry.New(db)
	h := newHarnessWith(t, func(c *api.Config) { c.Store = store })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	finish := func(id string, at time.Time) {
		t.Helper()
		if err := store.ApplyLedger(ctx, id, lethe.LedgerDelta{
			Status: lethe.RequestCompleted, CompletedAt: &at,
			Systems: []lethe.SystemProgress{{Name: "crm", Status: lethe.SystemErased, Records: 1}},
		}); err != nil {
			t.Fatalf("ApplyLedger: %v", err)
		}
	}
	finishedAt := testNow.Add(time.Hour).UTC().Truncate(time.Microsecond)
	first := h.createErasure(t, `{"subject":{"email":"`+canary+`","user_id":"u-1"}}`)
	dry := h.createErasure(t, `{"subject":{"email":"dry@example.com"},"dry_run":true}`)
	finish(first.ID, finishedAt)
	finish(dry.ID, finishedAt)
	testenv.SettleTransactions(t, db)

	res := h.do(t, req{method: "GET", path: "/v1/suppressions?type=email&since=" + testNow.UTC().Format(time.RFC3339)})
	p := decodeSuppressions(t, res)
	if len(p.Items) != 1 || *p.HasMore || p.NextCursor == nil {
		t.Fatalf("GET /v1/suppressions = %s, want the one email of the request that was not a dry run", res.body)
	}
	it := p.Items[0]
	if it.RequestID != first.ID || it.Type != "email" || it.Digest != h.digester.Sum("email", canary) || !it.ErasedAt.Equal(finishedAt) {
		t.Errorf("entry = %+v, want %s's email digest erased at %v", it, first.ID, finishedAt)
	}
	if strings.Contains(string(res.body), canary) {
		t.Errorf("the answer holds the identifier value")
	}
	if res := h.do(t, req{method: "GET", path: "/v1/suppressions?cursor=AAAA"}); res.status != http.StatusBadRequest || res.errorCode(t) != "invalid_cursor" {
		t.Errorf("bad cursor = %s, want 400 invalid_cursor", describe(res))
	}

	srv := httptest.NewServer(h.handler)
	defer srv.Close()
	list, err := connectors.NewSuppressionList(connectors.SuppressionConfig{
		URL: srv.URL, Token: allScopesToken, Digester: h.digester, Since: testNow, HTTPClient: srv.Client(), MaxAge: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	restored := []wire.Identifier{
		{Type: "email", Value: canary}, {Type: "email", Value: "dry@example.com"},
		{Type: "user_id", Value: "u-1"}, {Type: "user_id", Value: "u-2"},
	}
	got, err := list.Suppressed(ctx, restored)
	if err != nil {
		t.Fatalf("Suppressed: %v", err)
	}
	if want := []wire.Identifier{restored[0], restored[2]}; !reflect.DeepEqual(got, want) {
		t.Errorf("Suppressed = %d identifiers, want the canary and u-1", len(got))
	}

	second := h.createErasure(t, `{"subject":{"user_id":"u-2"}}`)
	finish(second.ID, finishedAt.Add(time.Minute))
	testenv.SettleTransactions(t, db)
	if n, err := list.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("Sync = %d, %v; want the one new entry", n, err)
	}
	var calls []connectors.Request
	handler := connectors.HandlerFunc(func(_ context.Context, r connectors.Request) (connectors.Result, error) {
		calls = append(calls, r)
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	done, err := list.ReErase(ctx, "crm", handler, restored[3:])
	if err != nil || len(done) != 1 || len(calls) != 1 {
		t.Fatalf("ReErase = %+v, %v with %d handler calls; want one", done, err, len(calls))
	}
	if calls[0].RequestID != second.ID || !reflect.DeepEqual(calls[0].Identifiers, restored[3:]) || calls[0].System != "crm" {
		t.Errorf("handler got request %s system %s with %d identifiers; want %s, crm, u-2",
			calls[0].RequestID, calls[0].System, len(calls[0].Identifiers), second.ID)
	}

	assertNotInDatabase(t, db, canary)
	if strings.Contains(h.logs.String(), canary) {
		t.Errorf("log contains the identifier value")
	}
}

// assertNotInDatabase reads every row of every table of the public schema
// as text and fails if value appears in any.
func assertNotInDatabase(t *testing.T, db *sql.DB, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("no tables: the check would prove nothing")
	}
	for _, table := range tables {
		var n int
		q := `SELECT count(*) FROM "` + table + `" t WHERE strpos(t::text, $1) > 0`
		if err := db.QueryRowContext(ctx, q, value).Scan(&n); err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		if n > 0 {
			t.Errorf("table %s holds the identifier value in %d rows", table, n)
		}
	}
}
