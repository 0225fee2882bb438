package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
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
