package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

func TestCreateErasure(t *testing.T) {
	h := newHarness(t)
	res := h.do(t, req{method: "POST", path: "/v1/erasures",
		body: `{"subject":{"user_id":"u-123","email":"ada@example.com"},"reason":"gdpr_art17","requested_by":"support:ticket-991","dry_run":true}`})
	if res.status != http.StatusAccepted {
		t.Fatalf("POST = %s, want 202", describe(res))
	}
	var e lethe.Erasure
	res.decode(t, &e)
	if !wire.ValidID(e.ID) {
		t.Errorf("id %q is not a lower-case UUID", e.ID)
	}
	if got := res.header.Get("Location"); got != "/v1/erasures/"+e.ID {
		t.Errorf("Location = %q", got)
	}
	if e.Status != lethe.RequestPending || !e.DryRun || e.Reason != "gdpr_art17" || e.RequestedBy != "support:ticket-991" {
		t.Errorf("answer = %+v", e)
	}
	if !slices.Equal(e.SubjectTypes, []string{"email", "user_id"}) {
		t.Errorf("subject_types = %v, want [email user_id]", e.SubjectTypes)
	}
	if e.WorkflowID != workflows.ErasureWorkflowID(e.ID) {
		t.Errorf("workflow_id = %q", e.WorkflowID)
	}
	for _, v := range []string{"u-123", "ada@example.com"} {
		if strings.Contains(string(res.body), v) {
			t.Errorf("answer contains an identifier value: %s", res.body)
		}
	}

	created := testNow.UTC().Truncate(time.Microsecond)
	deadline := created.Add(lethe.DefaultDeadline)
	if len(h.store.created) != 1 {
		t.Fatalf("store got %d requests, want 1", len(h.store.created))
	}
	in := h.store.created[0]
	if in.ID != e.ID || in.WorkflowID != e.WorkflowID || !in.DryRun {
		t.Errorf("NewErasure = %+v", in)
	}
	if !in.CreatedAt.Equal(created) || !in.Deadline.Equal(deadline) {
		t.Errorf("NewErasure times = %v, %v; want %v, %v", in.CreatedAt, in.Deadline, created, deadline)
	}
	wantDigests := []lethe.SubjectDigest{
		{Type: "email", Digest: h.digester.Sum("email", "ada@example.com")},
		{Type: "user_id", Digest: h.digester.Sum("user_id", "u-123")},
	}
	if !slices.Equal(in.Subject, wantDigests) {
		t.Errorf("subject digests = %v, want %v", in.Subject, wantDigests)
	}
	if len(in.RequestHash) != 64 {
		t.Errorf("request hash %q is not a hex HMAC-SHA256", in.RequestHash)
	}
	if in.IdempotencyKey != "" {
		t.Errorf("idempotency key = %q without the header", in.IdempotencyKey)
	}

	if len(h.engine.starts) != 1 {
		t.Fatalf("engine got %d starts, want 1", len(h.engine.starts))
	}
	st := h.engine.starts[0]
	wantSubject := []wire.Identifier{{Type: "email", Value: "ada@example.com"}, {Type: "user_id", Value: "u-123"}}
	if st.RequestID != e.ID || !st.DryRun || !slices.Equal(st.Subject, wantSubject) ||
		!st.CreatedAt.Equal(created) || !st.Deadline.Equal(deadline) {
		t.Errorf("workflow input = %+v", st)
	}
	// A new workflow runs the current behaviour; older ones keep theirs.
	if st.Revision != workflows.CurrentRevision {
		t.Errorf("workflow revision = %d, want %d", st.Revision, workflows.CurrentRevision)
	}
}

func TestCreateErasureIdempotency(t *testing.T) {
	h := newHarness(t)
	key := map[string]string{"Idempotency-Key": "ticket-991/attempt"}
	body := `{"subject":{"user_id":"u-123","email":"ada@example.com"},"reason":"gdpr_art17"}`
	// The same body with its keys in another order and other spacing.
	sameBody := `{ "reason": "gdpr_art17", "subject": {"email": "ada@example.com", "user_id": "u-123"} }`

	first := h.do(t, req{method: "POST", path: "/v1/erasures", body: body, headers: key})
	if first.status != http.StatusAccepted {
		t.Fatalf("first POST = %s, want 202", describe(first))
	}
	again := h.do(t, req{method: "POST", path: "/v1/erasures", body: sameBody, headers: key})
	if again.status != http.StatusOK {
		t.Fatalf("repeated POST = %s, want 200", describe(again))
	}
	var a, b lethe.Erasure
	first.decode(t, &a)
	again.decode(t, &b)
	if a.ID != b.ID {
		t.Errorf("repeated POST answered id %s, want %s", b.ID, a.ID)
	}
	if starts, _ := h.engine.counts(); starts != 1 {
		t.Errorf("engine got %d starts, want 1", starts)
	}

	other := h.do(t, req{method: "POST", path: "/v1/erasures", headers: key,
		body: `{"subject":{"user_id":"u-124","email":"ada@example.com"},"reason":"gdpr_art17"}`})
	if other.status != http.StatusConflict || other.errorCode(t) != "idempotency_conflict" {
		t.Fatalf("same key, other body = %s, want 409 idempotency_conflict", describe(other))
	}
	dry := h.do(t, req{method: "POST", path: "/v1/erasures", headers: key,
		body: `{"subject":{"user_id":"u-123","email":"ada@example.com"},"reason":"gdpr_art17","dry_run":true}`})
	if dry.status != http.StatusConflict {
		t.Fatalf("same key, dry_run flipped = %s, want 409", describe(dry))
	}

	// The key reaches the store only as a keyed digest.
	for _, in := range h.store.created {
		if in.IdempotencyKey == "" || strings.Contains(in.IdempotencyKey, "ticket-991") {
			t.Errorf("store got idempotency key %q, want a digest", in.IdempotencyKey)
		}
	}
	if h.store.created[0].RequestHash != h.store.created[1].RequestHash {
		t.Errorf("equal bodies hashed differently")
	}
	if h.store.created[0].RequestHash == h.store.created[2].RequestHash {
		t.Errorf("different bodies hashed alike")
	}

	noKey1 := h.createErasure(t, body)
	noKey2 := h.createErasure(t, body)
	if noKey1.ID == noKey2.ID || noKey1.ID == a.ID {
		t.Errorf("requests without a key share an id")
	}
}

func TestCreateErasureEngineDownRecordsNothing(t *testing.T) {
	h := newHarness(t)
	h.engine.startErr = lethe.Errorf(lethe.KindUnavailable, "temporal_unavailable", "the workflow engine is unavailable")
	res := h.do(t, req{method: "POST", path: "/v1/erasures", body: `{"subject":{"user_id":"u-123"}}`})
	if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "temporal_unavailable" {
		t.Fatalf("POST with Temporal down = %s, want 503 temporal_unavailable", describe(res))
	}
	if len(h.store.erasures) != 0 {
		t.Errorf("store kept %d requests, want none", len(h.store.erasures))
	}
}

func TestGetErasure(t *testing.T) {
	h := newHarness(t)
	e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
	res := h.do(t, req{method: "GET", path: "/v1/erasures/" + e.ID})
	if res.status != http.StatusOK {
		t.Fatalf("GET = %s, want 200", describe(res))
	}
	var got map[string]any
	res.decode(t, &got)
	for _, k := range []string{"id", "status", "overdue", "subject_types", "created_at", "deadline", "completed_at", "workflow_id", "systems"} {
		if _, ok := got[k]; !ok {
			t.Errorf("answer lacks %s: %s", k, res.body)
		}
	}
	if got["id"] != e.ID || got["completed_at"] != nil || mustJSON(t, got["systems"]) != "[]" {
		t.Errorf("answer = %s", res.body)
	}
}

// A request the ledger still shows pending (it is settling, or not yet
// planned) is answered with its workflow's status and systems; the rest
// stays the ledger's, and when the workflow does not answer the ledger's
// view stands. A request the ledger shows further along is not queried.
func TestGetPendingErasureShowsWorkflowProgress(t *testing.T) {
	h := newHarness(t)
	e := h.createErasure(t, `{"subject":{"user_id":"u-123"},"reason":"gdpr_art17"}`)
	h.engine.mu.Lock()
	h.engine.progress = map[string]lethe.Erasure{e.ID: {
		ID: e.ID, Status: lethe.RequestRunning, SubjectTypes: []string{"user_id", "device_id"},
		Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemDispatched, Attempts: 1}},
	}}
	h.engine.mu.Unlock()
	var got lethe.Erasure
	h.do(t, req{method: "GET", path: "/v1/erasures/" + e.ID}).decode(t, &got)
	if got.Status != lethe.RequestRunning || len(got.Systems) != 1 || got.Systems[0].Name != "orders" ||
		got.Systems[0].Status != lethe.SystemDispatched {
		t.Errorf("pending request answered %+v, want the workflow's status and systems", got)
	}
	if !slices.Equal(got.SubjectTypes, []string{"user_id"}) || got.Reason != "gdpr_art17" {
		t.Errorf("subject types %v, reason %q: want the ledger's", got.SubjectTypes, got.Reason)
	}

	// No answer from the workflow: the ledger's view.
	other := h.createErasure(t, `{"subject":{"user_id":"u-456"}}`)
	h.do(t, req{method: "GET", path: "/v1/erasures/" + other.ID}).decode(t, &got)
	if got.Status != lethe.RequestPending || len(got.Systems) != 0 {
		t.Errorf("unanswered query: %+v, want the ledger's pending request", got)
	}

	// Further along in the ledger: no query.
	h.store.setStatus(e.ID, lethe.RequestCompleted)
	h.engine.mu.Lock()
	h.engine.queried = nil
	h.engine.mu.Unlock()
	h.do(t, req{method: "GET", path: "/v1/erasures/" + e.ID}).decode(t, &got)
	if got.Status != lethe.RequestCompleted {
		t.Errorf("completed request answered %s", got.Status)
	}
	h.engine.mu.Lock()
	defer h.engine.mu.Unlock()
	if len(h.engine.queried) != 0 {
		t.Errorf("a completed request's workflow was queried: %v", h.engine.queried)
	}
}

func TestListErasures(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 5 {
		e := h.createErasure(t, fmt.Sprintf(`{"subject":{"user_id":"u-%d"}}`, i))
		ids = append(ids, e.ID)
	}
	h.store.setStatus(ids[1], lethe.RequestRunning)
	h.store.setStatus(ids[3], lethe.RequestRunning)

	type page struct {
		Items      []lethe.Erasure `json:"items"`
		NextCursor *string         `json:"next_cursor"`
	}
	res := h.do(t, req{method: "GET", path: "/v1/erasures"})
	if res.status != http.StatusOK {
		t.Fatalf("list = %s", describe(res))
	}
	if h.store.lastFilter.Limit != 50 || h.store.lastFilter.Status != "" || h.store.lastFilter.Cursor != "" {
		t.Errorf("default filter = %+v, want limit 50 and nothing else", h.store.lastFilter)
	}
	var p page
	res.decode(t, &p)
	if len(p.Items) != 5 || p.Items[0].ID != ids[4] || p.NextCursor != nil {
		t.Errorf("one page = %s, want all five newest first and no next_cursor", res.body)
	}

	var seen []string
	cursor := ""
	for range 4 {
		res = h.do(t, req{method: "GET", path: "/v1/erasures?limit=2&cursor=" + cursor})
		if res.status != http.StatusOK {
			t.Fatalf("page = %s", describe(res))
		}
		p = page{}
		res.decode(t, &p)
		for _, e := range p.Items {
			seen = append(seen, e.ID)
		}
		if p.NextCursor == nil {
			break
		}
		if *p.NextCursor == "" {
			t.Fatalf("next_cursor present but empty: %s", res.body)
		}
		cursor = *p.NextCursor
	}
	if want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}; !slices.Equal(seen, want) {
		t.Errorf("paged ids = %v, want %v", seen, want)
	}

	res = h.do(t, req{method: "GET", path: "/v1/erasures?status=running&limit=200"})
	p = page{}
	res.decode(t, &p)
	if h.store.lastFilter.Status != lethe.RequestRunning || h.store.lastFilter.Limit != 200 {
		t.Errorf("filter = %+v, want running, 200", h.store.lastFilter)
	}
	if len(p.Items) != 2 || p.Items[0].ID != ids[3] || p.Items[1].ID != ids[1] {
		t.Errorf("running = %s", res.body)
	}

	res = h.do(t, req{method: "GET", path: "/v1/erasures?status=failed"})
	if string(res.body) != "{\"items\":[]}\n" {
		t.Errorf("empty page = %s, want {\"items\":[]}", res.body)
	}
}

func TestCancelErasure(t *testing.T) {
	t.Run("canceled", func(t *testing.T) {
		h := newHarness(t)
		e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		h.engine.onCancel = func(id string) error {
			h.store.setStatus(id, lethe.RequestCanceled)
			return nil
		}
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
		if res.status != http.StatusOK {
			t.Fatalf("cancel = %s, want 200", describe(res))
		}
		var got lethe.Erasure
		res.decode(t, &got)
		if got.ID != e.ID || got.Status != lethe.RequestCanceled {
			t.Errorf("cancel answered %+v, want status canceled", got)
		}
		if _, cancels := h.engine.counts(); cancels != 1 {
			t.Errorf("engine got %d cancels, want 1", cancels)
		}
	})
	t.Run("already final", func(t *testing.T) {
		h := newHarness(t)
		e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		h.store.setStatus(e.ID, lethe.RequestCompleted)
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
		if res.status != http.StatusConflict || res.errorCode(t) != "already_finished" {
			t.Fatalf("cancel of completed = %s, want 409 already_finished", describe(res))
		}
		if _, cancels := h.engine.counts(); cancels != 0 {
			t.Errorf("engine got %d cancels, want none", cancels)
		}
	})
	t.Run("finished meanwhile", func(t *testing.T) {
		h := newHarness(t)
		e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		h.engine.onCancel = func(id string) error {
			h.store.setStatus(id, lethe.RequestCompleted)
			return nil
		}
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
		if res.status != http.StatusConflict || res.errorCode(t) != "already_finished" {
			t.Fatalf("cancel racing completion = %s, want 409 already_finished", describe(res))
		}
	})
	t.Run("workflow already closed", func(t *testing.T) {
		h := newHarness(t)
		e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		h.engine.onCancel = func(id string) error {
			h.store.setStatus(id, lethe.RequestFailed)
			return lethe.Errorf(lethe.KindConflict, "already_finished", "closed")
		}
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
		if res.status != http.StatusConflict || res.errorCode(t) != "already_finished" {
			t.Fatalf("cancel of closed workflow = %s, want 409", describe(res))
		}
	})
	t.Run("unknown", func(t *testing.T) {
		h := newHarness(t)
		res := h.do(t, req{method: "POST", path: "/v1/erasures/0b5c8d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e/cancel"})
		if res.status != http.StatusNotFound || res.errorCode(t) != "erasure_not_found" {
			t.Fatalf("cancel of unknown = %s, want 404", describe(res))
		}
	})
	t.Run("temporal down", func(t *testing.T) {
		h := newHarness(t)
		e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		h.engine.onCancel = func(string) error {
			return lethe.Errorf(lethe.KindUnavailable, "temporal_unavailable", "down")
		}
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
		if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "temporal_unavailable" {
			t.Fatalf("cancel with Temporal down = %s, want 503", describe(res))
		}
	})
	t.Run("not recorded yet", func(t *testing.T) {
		h := newHarness(t)
		e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
		res := h.do(t, req{method: "POST", path: "/v1/erasures/" + e.ID + "/cancel"})
		if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "cancel_pending" {
			t.Fatalf("cancel not yet in the ledger = %s, want 503 cancel_pending", describe(res))
		}
	})
}

func TestStoreUnavailableAnswers503(t *testing.T) {
	down := lethe.Errorf(lethe.KindUnavailable, "database_unavailable", "the database is unavailable")
	for _, rq := range []req{
		{method: "GET", path: "/v1/systems"},
		{method: "GET", path: "/v1/systems/orders"},
		{method: "PUT", path: "/v1/systems/orders", body: `{"identifiers":["user_id"]}`},
		{method: "DELETE", path: "/v1/systems/orders"},
		{method: "POST", path: "/v1/erasures", body: `{"subject":{"user_id":"u-1"}}`},
		{method: "GET", path: "/v1/erasures"},
		{method: "GET", path: "/v1/erasures/0b5c8d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"},
		{method: "POST", path: "/v1/erasures/0b5c8d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e/cancel"},
	} {
		t.Run(rq.method+" "+rq.path, func(t *testing.T) {
			h := newHarness(t)
			h.store.err = down
			res := h.do(t, rq)
			if res.status != http.StatusServiceUnavailable || res.errorCode(t) != "database_unavailable" {
				t.Fatalf("%s %s = %s, want 503 database_unavailable", rq.method, rq.path, describe(res))
			}
			if starts, _ := h.engine.counts(); starts != 0 {
				t.Errorf("engine started %d workflows", starts)
			}
		})
	}
}

func TestInternalErrorIsLoggedNotShown(t *testing.T) {
	h := newHarness(t)
	h.store.err = errors.New("pq: relation \"systems\" does not exist")
	res := h.do(t, req{method: "GET", path: "/v1/systems"})
	if res.status != http.StatusInternalServerError || res.errorCode(t) != "internal" {
		t.Fatalf("unclassified store error = %s, want 500 internal", describe(res))
	}
	if strings.Contains(string(res.body), "relation") {
		t.Errorf("answer leaks the cause: %s", res.body)
	}
	if !strings.Contains(h.logs.String(), "relation") {
		t.Errorf("cause not logged: %s", h.logs.String())
	}
}

func TestCreateErasureUsesConfiguredDeadline(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) { c.DefaultDeadline = 72 * time.Hour })
	e := h.createErasure(t, `{"subject":{"user_id":"u-123"}}`)
	if got := e.Deadline.Sub(e.CreatedAt); got != 72*time.Hour {
		t.Errorf("deadline - created_at = %v, want 72h", got)
	}
	if got := h.engine.starts[0].Deadline.Sub(h.engine.starts[0].CreatedAt); got != 72*time.Hour {
		t.Errorf("workflow input window = %v, want 72h", got)
	}
}
