package e2e_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/certificate"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// batchMarker is in every identifier value of the bulk test, so that the
// scans of the database and the logs find any that leaked.
const batchMarker = "b4tch-canary-5e2d"

func bulkEmail(i int) string  { return fmt.Sprintf("s%04d-%s@example.test", i, batchMarker) }
func bulkUserID(i int) string { return fmt.Sprintf("u%04d-%s", i, batchMarker) }
func bulkAccount(email string) string {
	return "acct-" + strings.TrimSuffix(email, "@example.test")
}

// warehouse is a batch-capable system: it erases by email, in one call per
// batch command, and reveals an account id for every tenth subject.
type warehouse struct {
	mu    sync.Mutex
	seen  map[string]int
	calls atomic.Int64
}

func (w *warehouse) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return connectors.Result{}, fmt.Errorf("warehouse takes batch commands only")
}

func (w *warehouse) EraseBatch(_ context.Context, req connectors.BatchRequest) ([]connectors.ItemResult, error) {
	w.calls.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]connectors.ItemResult, len(req.Items))
	for i, it := range req.Items {
		email := it.Identifiers[0].Value
		w.seen[email]++
		res := connectors.Result{Outcome: wire.OutcomeErased, Records: 1}
		var n int
		if _, err := fmt.Sscanf(email, "s%04d-", &n); err == nil && n%10 == 0 {
			res.Derived = []wire.Identifier{{Type: "account_id", Value: bulkAccount(email)}}
		}
		out[i] = connectors.ItemResult{ItemID: it.ItemID, Result: res}
	}
	return out, nil
}

// TestBulkErasure runs a batch of 1,000 subjects (one named twice) on the
// real stack: a batch-capable system, a per-subject one that fails five
// subjects until it is mended and a retry completes them, ten subjects
// under a legal hold there, and identifiers the batch-capable system
// reveals followed to a third system. Every subject's final state is
// checked, the certificate and three proofs verified, and no identifier
// value is left in PostgreSQL or the logs.
func TestBulkErasure(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := certificate.NewSigner(key.Seed())
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{Signer: signer})
	const n = 1000
	s.putSystem(lethe.System{Name: "warehouse", Identifiers: []string{"email"}, Produces: []string{"account_id"}, Batch: true})
	s.putSystem(lethe.System{Name: "crm", Identifiers: []string{"user_id"}})
	s.putSystem(lethe.System{Name: "billing", Identifiers: []string{"account_id"}, Batch: true})

	wh := &warehouse{seen: map[string]int{}}
	s.runConnector("warehouse", wh)
	failing := map[string]bool{}
	for i := 100; i < 105; i++ {
		failing[bulkUserID(i)] = true
	}
	var mended atomic.Bool
	s.runConnector("crm", connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		if failing[req.Values("user_id")[0]] && !mended.Load() {
			return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "account locked"}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	}))
	var billed atomic.Int64
	s.runConnector("billing", connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		billed.Add(1)
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 3}, nil
	}))

	// Ten subjects are under a legal hold in crm.
	for i := 200; i < 210; i++ {
		hold := map[string]any{"subject": map[string]string{"user_id": bulkUserID(i)}, "basis": "Art. 17(3)(e): litigation", "system": "crm"}
		if r := s.do(http.MethodPut, fmt.Sprintf("/v1/holds/case-%d", i), hold); r.Status != http.StatusCreated {
			t.Fatalf("PUT hold = %d %s", r.Status, r.Body)
		}
	}

	var body strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"subject": map[string]string{"email": bulkEmail(i), "user_id": bulkUserID(i)}})
		body.Write(line)
		body.WriteByte('\n')
	}
	// Subject 7 again, by its email only: the same person, erased once.
	fmt.Fprintf(&body, `{"subject": {"email": %q}}`+"\n", bulkEmail(7))
	r := s.doRaw(http.MethodPost, "/v1/erasure-batches?reason=retention&requested_by=e2e", body.String(),
		"application/x-ndjson", "Idempotency-Key", "bulk-e2e")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasure-batches = %d %s", r.Status, r.Body)
	}
	var b lethe.Batch
	r.Decode(t, &b)
	if b.Total != n || b.Duplicates != 1 {
		t.Fatalf("batch total %d duplicates %d, want %d and 1", b.Total, b.Duplicates, n)
	}

	b = s.awaitBatch(b.ID, 3*time.Minute)
	if b.Status != lethe.RequestFailed || b.Counts.Failed != 5 || b.Counts.Completed != n-5 {
		t.Fatalf("batch = %s %+v, want failed with 5 failed subjects", b.Status, b.Counts)
	}
	failed := s.batchSubjects(b.ID, "failed")
	if len(failed) != 5 {
		t.Fatalf("%d failed subjects listed, want 5", len(failed))
	}
	for _, sub := range failed {
		if p := progressOf(t, sub, "crm"); p.Status != lethe.SystemFailed || p.Detail != "account locked" {
			t.Errorf("failed subject %d in crm: %+v", sub.Item, p)
		}
	}

	mended.Store(true)
	if r := s.do(http.MethodPost, "/v1/erasure-batches/"+b.ID+"/retry", map[string]any{"systems": []string{"crm"}}); r.Status != http.StatusAccepted {
		t.Fatalf("retry = %d %s", r.Status, r.Body)
	}
	b = s.awaitBatch(b.ID, 2*time.Minute)
	if b.Status != lethe.RequestCompleted || b.Counts.Completed != n {
		t.Fatalf("after the retry the batch is %s %+v, want completed", b.Status, b.Counts)
	}

	// Every subject's final state.
	all := s.batchSubjects(b.ID, "")
	if len(all) != n {
		t.Fatalf("%d subjects listed, want %d", len(all), n)
	}
	for _, sub := range all {
		i := sub.Item // items follow the body's order
		if sub.Status != lethe.RequestCompleted {
			t.Errorf("subject %d is %s", i, sub.Status)
		}
		if p := progressOf(t, sub, "warehouse"); p.Status != lethe.SystemErased || p.Records != 1 {
			t.Errorf("subject %d in warehouse: %+v", i, p)
		}
		crm := progressOf(t, sub, "crm")
		switch {
		case i >= 200 && i < 210:
			if crm.Status != lethe.SystemRetained || !strings.Contains(crm.Detail, fmt.Sprintf("case-%d", i)) {
				t.Errorf("held subject %d in crm: %+v", i, crm)
			}
		case i >= 100 && i < 105:
			if crm.Status != lethe.SystemErased || crm.Attempts != 2 {
				t.Errorf("retried subject %d in crm: %+v, want erased at attempt 2", i, crm)
			}
		case crm.Status != lethe.SystemErased:
			t.Errorf("subject %d in crm: %+v", i, crm)
		}
		billing, reached := findProgress(sub, "billing")
		if reached != (i%10 == 0) || reached && (billing.Status != lethe.SystemErased || billing.Records != 3) {
			t.Errorf("subject %d in billing: reached %v, %+v; want reached only through a revealed account id", i, reached, billing)
		}
		if i%10 == 0 && len(sub.Identifiers) != 3 {
			t.Errorf("subject %d has %d digests, want its two and the revealed one", i, len(sub.Identifiers))
		}
	}
	if got := billed.Load(); got != n/10 {
		t.Errorf("billing erased %d subjects, want %d", got, n/10)
	}
	wh.mu.Lock()
	for email, times := range wh.seen {
		if times != 1 {
			t.Errorf("warehouse erased a subject %d times", times)
			_ = email
		}
	}
	if len(wh.seen) != n {
		t.Errorf("warehouse erased %d subjects, want %d", len(wh.seen), n)
	}
	wh.mu.Unlock()
	if calls := wh.calls.Load(); calls > 2 {
		t.Errorf("warehouse was called %d times for one chunk of a thousand, want one batch call", calls)
	}

	// The certificate and three proofs, verified offline.
	cr := s.do(http.MethodGet, "/v1/erasure-batches/"+b.ID+"/certificate", nil)
	if cr.Status != http.StatusOK {
		t.Fatalf("certificate = %d %s", cr.Status, cr.Body)
	}
	cert, _, err := certificate.VerifyBatch(cr.Body, []ed25519.PublicKey{signer.Public()})
	if err != nil {
		t.Fatalf("verify the batch certificate: %v", err)
	}
	for _, i := range []int{0, 203, 999} {
		d := s.Digester.Sum("email", bulkEmail(i))
		pr := s.do(http.MethodGet, "/v1/erasure-batches/"+b.ID+"/subjects/"+url.PathEscape(d)+"/proof", nil)
		if pr.Status != http.StatusOK {
			t.Fatalf("proof of subject %d = %d %s", i, pr.Status, pr.Body)
		}
		proof, err := certificate.ParseProof(pr.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := certificate.VerifyProof(cert, proof); err != nil {
			t.Errorf("proof of subject %d: %v", i, err)
		}
		if !leafNames(proof.Leaf, d) {
			t.Errorf("the proof of subject %d is about another subject", i)
		}
	}

	s.assertNoValue(t, batchMarker)
}

// leafNames reports whether a proof's leaf names the digest.
func leafNames(l certificate.Leaf, digest string) bool {
	for _, d := range l.Subject {
		if d.Digest == digest {
			return true
		}
	}
	return false
}

func findProgress(sub lethe.BatchSubject, system string) (lethe.SystemProgress, bool) {
	for _, p := range sub.Systems {
		if p.Name == system {
			return p, true
		}
	}
	return lethe.SystemProgress{}, false
}

func progressOf(t *testing.T, sub lethe.BatchSubject, system string) lethe.SystemProgress {
	t.Helper()
	p, ok := findProgress(sub, system)
	if !ok {
		t.Errorf("subject %d has no progress in %s: %+v", sub.Item, system, sub.Systems)
	}
	return p
}

// awaitBatch polls a batch until it reaches a final status.
func (s *stack) awaitBatch(id string, within time.Duration) lethe.Batch {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := s.do(http.MethodGet, "/v1/erasure-batches/"+id, nil)
		if r.Status != http.StatusOK {
			s.t.Fatalf("GET /v1/erasure-batches/%s = %d %s", id, r.Status, r.Body)
		}
		var b lethe.Batch
		r.Decode(s.t, &b)
		if b.Status.Final() {
			return b
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("batch %s still %s after %s: %s", id, b.Status, within, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// batchSubjects lists a batch's subjects, every page, with a status or all.
func (s *stack) batchSubjects(id, status string) []lethe.BatchSubject {
	s.t.Helper()
	var out []lethe.BatchSubject
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if status != "" {
			q.Set("status", status)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := s.do(http.MethodGet, "/v1/erasure-batches/"+id+"/subjects?"+q.Encode(), nil)
		if r.Status != http.StatusOK {
			s.t.Fatalf("GET subjects = %d %s", r.Status, r.Body)
		}
		var page struct {
			Items      []lethe.BatchSubject `json:"items"`
			NextCursor string               `json:"next_cursor"`
		}
		r.Decode(s.t, &page)
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// batchHistoriesDir holds recorded histories of BatchWorkflow (batch-*)
// and BatchChunkWorkflow (chunk-*), which workflows.TestReplayBatchHistories
// replays.
const batchHistoriesDir = historiesDir + "/batch"

// TestRecordBatchHistories records the histories of a small batch that
// takes every path a chunk has: a batch command and single commands, a
// revealed identifier followed to a third system, a legal hold, a failure
// and the retry that mends it. Like TestRecordHistories it is a tool, run
// with LETHE_RECORD_HISTORIES=1 when the batch workflows' behaviour changes.
func TestRecordBatchHistories(t *testing.T) {
	if os.Getenv(recordEnv) != "1" {
		t.Skipf("records histories only with %s=1 (a tool, not a test; workflows.TestReplayBatchHistories replays them)", recordEnv)
	}
	if err := os.MkdirAll(batchHistoriesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, stackOptions{Plaintext: true})
	s.putSystem(lethe.System{Name: "warehouse", Identifiers: []string{"email"}, Produces: []string{"account_id"}, Batch: true})
	s.putSystem(lethe.System{Name: "crm", Identifiers: []string{"user_id"}})
	s.putSystem(lethe.System{Name: "billing", Identifiers: []string{"account_id"}, Batch: true})
	s.runConnector("warehouse", &warehouse{seen: map[string]int{}})
	var mended atomic.Bool
	s.runConnector("crm", connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		if req.Values("user_id")[0] == bulkUserID(1) && !mended.Load() {
			return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "account locked"}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	}))
	s.runConnector("billing", connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	}))
	hold := map[string]any{"subject": map[string]string{"user_id": bulkUserID(3)}, "basis": "litigation", "system": "crm"}
	if r := s.do(http.MethodPut, "/v1/holds/case-3", hold); r.Status != http.StatusCreated {
		t.Fatalf("PUT hold = %d %s", r.Status, r.Body)
	}
	var body strings.Builder
	for i := range 4 {
		fmt.Fprintf(&body, "{\"subject\": {\"email\": %q, \"user_id\": %q}}\n", bulkEmail(i), bulkUserID(i))
	}
	b, chunkID := s.failThenRetryBatch(t, body.String(), func() { mended.Store(true) })
	ordered := recordOrderedBatch(t, s)
	for name, id := range map[string]string{"batch-retry": workflows.BatchWorkflowID(b.ID), "chunk-retry": workflows.ErasureWorkflowID(chunkID),
		"chunk-ordered": workflows.ErasureWorkflowID(ordered)} {
		file := filepath.Join(batchHistoriesDir, name+".json")
		if _, err := os.Stat(file); err == nil {
			t.Logf("%s is recorded; delete it to record it again", file)
			continue
		}
		runs := s.histories(id)
		if len(runs) != 1 {
			t.Fatalf("%s ran %d times, want once", name, len(runs))
		}
		writeHistory(t, file, runs[0])
	}
}

// failThenRetryBatch submits ndjson as a batch, waits for it to end
// failed, calls mend, retries it and waits for it to complete; it returns
// the batch and the id of its one chunk.
func (s *stack) failThenRetryBatch(t *testing.T, ndjson string, mend func()) (lethe.Batch, string) {
	t.Helper()
	r := s.doRaw(http.MethodPost, "/v1/erasure-batches", ndjson, "application/x-ndjson")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasure-batches = %d %s", r.Status, r.Body)
	}
	var b lethe.Batch
	r.Decode(t, &b)
	if b = s.awaitBatch(b.ID, time.Minute); b.Status != lethe.RequestFailed {
		t.Fatalf("batch = %s, want failed before the retry", b.Status)
	}
	mend()
	if r := s.do(http.MethodPost, "/v1/erasure-batches/"+b.ID+"/retry", nil); r.Status != http.StatusAccepted {
		t.Fatalf("retry = %d %s", r.Status, r.Body)
	}
	if b = s.awaitBatch(b.ID, time.Minute); b.Status != lethe.RequestCompleted {
		t.Fatalf("batch = %s, want completed after the retry", b.Status)
	}
	var chunkID string
	if err := s.DB.QueryRowContext(s.ctx, `SELECT id FROM batch_chunks WHERE batch_id = $1`, b.ID).Scan(&chunkID); err != nil {
		t.Fatal(err)
	}
	return b, chunkID
}

// recordOrderedBatch runs a batch of three subjects over ord-first and
// ord-second, which is erased after it: ord-first fails one subject until
// a retry, which holds that subject at ord-second meanwhile. It returns
// the chunk's id.
func recordOrderedBatch(t *testing.T, s *stack) string {
	t.Helper()
	s.putSystem(lethe.System{Name: "ord-first", Identifiers: []string{"member_id"}, Batch: true})
	s.putSystem(lethe.System{Name: "ord-second", Identifiers: []string{"member_id"}, After: []string{"ord-first"}})
	var mended atomic.Bool
	s.runConnector("ord-first", connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		if req.Values("member_id")[0] == "m1-"+batchMarker && !mended.Load() {
			return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "account locked"}, nil
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	}))
	s.runConnector("ord-second", erase())
	var body strings.Builder
	for i := range 3 {
		fmt.Fprintf(&body, "{\"subject\": {\"member_id\": \"m%d-%s\"}}\n", i, batchMarker)
	}
	_, chunkID := s.failThenRetryBatch(t, body.String(), func() { mended.Store(true) })
	return chunkID
}

// TestBulkCancel cancels a batch whose system has not answered: its
// workflows stop, its subjects end canceled, and the ledger says so.
func TestBulkCancel(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.putSystem(lethe.System{Name: "slow", Identifiers: []string{"email"}, Batch: true})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var got atomic.Int64
	s.runConnector("slow", connectors.HandlerFunc(func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		got.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return connectors.Result{}, ctx.Err()
	}))
	var body strings.Builder
	for i := range 30 {
		fmt.Fprintf(&body, "{\"subject\": {\"email\": %q}}\n", bulkEmail(i))
	}
	r := s.doRaw(http.MethodPost, "/v1/erasure-batches", body.String(), "application/x-ndjson")
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasure-batches = %d %s", r.Status, r.Body)
	}
	var b lethe.Batch
	r.Decode(t, &b)
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connector never received the batch command")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := s.do(http.MethodPost, "/v1/erasure-batches/"+b.ID+"/cancel", nil); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	b = s.awaitBatch(b.ID, time.Minute)
	if b.Status != lethe.RequestCanceled || b.Counts.Canceled != 30 {
		t.Fatalf("batch = %s %+v, want canceled with its 30 subjects", b.Status, b.Counts)
	}
	if subs := s.batchSubjects(b.ID, "canceled"); len(subs) != 30 {
		t.Errorf("%d subjects listed canceled, want 30", len(subs))
	}
	if r := s.do(http.MethodPost, "/v1/erasure-batches/"+b.ID+"/cancel", nil); r.Status != http.StatusConflict {
		t.Errorf("a second cancel = %d %s, want 409", r.Status, r.Body)
	}
}
