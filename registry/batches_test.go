package registry_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/registry"
)

// batchChunkSize cuts test batches into chunks as the API does
// (workflows.ChunkSize).
const batchChunkSize = 1000

// testDigester digests the tests' identifier values, as the API does
// before anything reaches the registry.
var testDigester = func() *digest.Digester {
	d, err := digest.New(bytes.Repeat([]byte{0x5a}, digest.MinKeyBytes))
	if err != nil {
		panic(err)
	}
	return d
}()

// batchValue is the identifier value of type idType of subject i of the
// batch tagged tag: unique per tag, never stored.
func batchValue(tag string, i int, idType string) string {
	if idType == "email" {
		return fmt.Sprintf("%s-%d@example.com", tag, i)
	}
	return fmt.Sprintf("%s-user-%d", tag, i)
}

// batchDigest is the keyed digest of batchValue.
func batchDigest(tag string, i int, idType string) string {
	return testDigester.Sum(idType, batchValue(tag, i, idType))
}

// newBatch describes a batch of n subjects, each with an email and a
// user_id, tagged tag so that two batches share no identifier.
func newBatch(at time.Time, tag string, n int) registry.NewBatch {
	id := uuid.NewString()
	in := registry.NewBatch{
		ID:           id,
		SubjectTypes: []string{"email", "user_id"},
		Reason:       "gdpr_art17",
		RequestedBy:  "support:ticket-7",
		CreatedBy:    "token:ops",
		RequestHash:  "hash-" + id,
		CreatedAt:    at,
		Deadline:     at.Add(lethe.DefaultDeadline),
		WorkflowID:   "erasure-batch-" + id,
	}
	for c := range (n + batchChunkSize - 1) / batchChunkSize {
		in.Chunks = append(in.Chunks, registry.BatchChunkRef{Chunk: c, ID: uuid.NewString()})
	}
	in.Subjects = make([]registry.NewBatchSubject, n)
	for i := range n {
		in.Subjects[i] = registry.NewBatchSubject{
			Item: i, ItemID: uuid.NewString(), Chunk: i / batchChunkSize,
			Digests: []lethe.SubjectDigest{
				{Type: "email", Digest: batchDigest(tag, i, "email")},
				{Type: "user_id", Digest: batchDigest(tag, i, "user_id")},
			},
		}
	}
	return in
}

// createBatch records in with a start that succeeds.
func createBatch(t *testing.T, s *registry.Store, in registry.NewBatch) lethe.Batch {
	t.Helper()
	b, created, err := s.CreateBatch(testContext(t), in, func(context.Context) error { return nil })
	if err != nil || !created {
		t.Fatalf("CreateBatch = created %v, err %v; want created", created, err)
	}
	return b
}

// exec runs a statement the ledger's workflow writes would, for tests that
// need a batch in a given state.
func exec(t *testing.T, s *registry.Store, query string, args ...any) {
	t.Helper()
	if _, err := s.DB().ExecContext(testContext(t), query, args...); err != nil {
		t.Fatalf("%s: %v", strings.Join(strings.Fields(query), " "), err)
	}
}

// setSubjects puts the given items of a batch in status.
func setSubjects(t *testing.T, s *registry.Store, id string, status lethe.RequestStatus, items ...int) {
	t.Helper()
	for _, item := range items {
		exec(t, s, `UPDATE batch_subjects SET status = $3 WHERE batch_id = $1 AND item = $2`, id, item, status)
	}
}

// addOutcome records a system's outcome for one subject of a batch.
func addOutcome(t *testing.T, s *registry.Store, id string, item int, system string, status lethe.SystemStatus, records int64) {
	t.Helper()
	exec(t, s, `INSERT INTO batch_outcomes (batch_id, item, system, status, attempts, records, detail, updated_at)
		VALUES ($1, $2, $3, $4, 1, $5, $6, $7)`, id, item, system, status, records, "detail of "+system, t0)
}

// finishBatch ends a batch in status at the given time, as the workflow's
// last ledger write does; the trigger stamps its suppression list position.
func finishBatch(t *testing.T, s *registry.Store, id string, status lethe.RequestStatus, at time.Time) {
	t.Helper()
	exec(t, s, `UPDATE erasure_batches SET status = $2, completed_at = $3, updated_at = $3 WHERE id = $1`, id, status, at)
}

func queryCount(t *testing.T, s *registry.Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(testContext(t), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestPutSystemStoresTheBatchFlag(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	sys := lethe.System{Name: "warehouse", Identifiers: []string{"email"}, Batch: true}

	created, isNew, err := s.PutSystem(ctx, sys, ops)
	if err != nil || !isNew || !created.Batch {
		t.Fatalf("PutSystem(batch) = %+v, created %v, %v; want batch true", created, isNew, err)
	}
	got, err := s.GetSystem(ctx, "warehouse")
	if err != nil || !got.Batch {
		t.Errorf("GetSystem = %+v, %v; want batch true", got, err)
	}
	listed, err := s.ListSystems(ctx)
	if err != nil || len(listed) != 1 || !listed[0].Batch {
		t.Errorf("ListSystems = %+v, %v; want the system with batch true", listed, err)
	}
	matched, err := s.MatchSystems(ctx, []string{"email"})
	if err != nil || len(matched) != 1 || !matched[0].Batch {
		t.Errorf("MatchSystems = %+v, %v; want the system with batch true", matched, err)
	}

	clk.Advance(time.Minute)
	sys.Batch = false
	replaced, isNew, err := s.PutSystem(ctx, sys, ops)
	if err != nil || isNew || replaced.Batch {
		t.Fatalf("PutSystem(batch off) = %+v, created %v, %v; want a replace with batch false", replaced, isNew, err)
	}
	events := auditWhere(t, s.DB(), `system = $1`, "warehouse")
	if len(events) != 2 || events[0].Kind != string(lethe.AuditSystemCreated) || events[1].Kind != string(lethe.AuditSystemReplaced) {
		t.Fatalf("system events = %+v, want system_created then system_replaced", events)
	}
	if !strings.Contains(events[0].Detail, `"batch":true`) {
		t.Errorf("created detail = %s, want it to state batch true", events[0].Detail)
	}
	if !jsonEqual(t, events[1].Detail, mustJSON(t, map[string]lethe.System{"before": created, "after": replaced})) {
		t.Errorf("replaced detail = %s, want the system before (batch true) and after (batch false)", events[1].Detail)
	}
	verifyIntact(t, s)
}

func TestCreateBatch(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)

	in := newBatch(t0, "create", 2500)
	in.Duplicates = 3
	var starts int
	got, created, err := s.CreateBatch(ctx, in, func(ctx context.Context) error {
		starts++
		return nil
	})
	if err != nil || !created {
		t.Fatalf("CreateBatch = created %v, %v", created, err)
	}
	if starts != 1 {
		t.Errorf("start called %d times, want 1", starts)
	}
	want := lethe.Batch{
		ID: in.ID, Status: lethe.RequestPending, Total: 2500, Duplicates: 3,
		SubjectTypes: []string{"email", "user_id"}, Reason: in.Reason, RequestedBy: in.RequestedBy,
		CreatedBy: in.CreatedBy, Counts: lethe.BatchCounts{Pending: 2500}, Systems: []lethe.BatchSystemCounts{},
		CreatedAt: t0, Deadline: t0.Add(lethe.DefaultDeadline), WorkflowID: in.WorkflowID,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CreateBatch = %+v\nwant %+v", got, want)
	}
	fetched, err := s.GetBatch(ctx, in.ID)
	if err != nil || !reflect.DeepEqual(fetched, want) {
		t.Errorf("GetBatch = %+v, %v\nwant %+v", fetched, err, want)
	}

	t.Run("chunks, subjects and digests are recorded", func(t *testing.T) {
		rows, err := s.DB().QueryContext(ctx, `SELECT chunk, id FROM batch_chunks WHERE batch_id = $1 ORDER BY chunk`, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		var chunks []registry.BatchChunkRef
		for rows.Next() {
			var c registry.BatchChunkRef
			if err := rows.Scan(&c.Chunk, &c.ID); err != nil {
				t.Fatal(err)
			}
			chunks = append(chunks, c)
		}
		rows.Close()
		if !reflect.DeepEqual(chunks, in.Chunks) {
			t.Errorf("chunks = %v, want %v", chunks, in.Chunks)
		}
		if n := queryCount(t, s, `SELECT count(*) FROM batch_subjects WHERE batch_id = $1 AND status = 'pending'`, in.ID); n != 2500 {
			t.Errorf("%d pending subjects, want 2500", n)
		}
		for _, sub := range []registry.NewBatchSubject{in.Subjects[0], in.Subjects[1499], in.Subjects[2499]} {
			var (
				itemID string
				chunk  int
			)
			if err := s.DB().QueryRowContext(ctx, `SELECT item_id, chunk FROM batch_subjects WHERE batch_id = $1 AND item = $2`,
				in.ID, sub.Item).Scan(&itemID, &chunk); err != nil {
				t.Fatal(err)
			}
			if itemID != sub.ItemID || chunk != sub.Chunk {
				t.Errorf("subject %d = item_id %s chunk %d, want %s chunk %d", sub.Item, itemID, chunk, sub.ItemID, sub.Chunk)
			}
			n := queryCount(t, s, `SELECT count(*) FROM batch_subject_digests
				WHERE batch_id = $1 AND item = $2 AND NOT derived AND ((id_type, digest) = ($3, $4) OR (id_type, digest) = ($5, $6))`,
				in.ID, sub.Item, sub.Digests[0].Type, sub.Digests[0].Digest, sub.Digests[1].Type, sub.Digests[1].Digest)
			if n != 2 {
				t.Errorf("subject %d has %d of its 2 digests", sub.Item, n)
			}
		}
		if n := queryCount(t, s, `SELECT count(*) FROM batch_subject_digests WHERE batch_id = $1`, in.ID); n != 5000 {
			t.Errorf("%d digests, want 5000", n)
		}
	})

	t.Run("one received event names the principal and the counts", func(t *testing.T) {
		events, err := s.Audit(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 {
			t.Fatalf("audit = %+v, want one event", events)
		}
		e := events[0]
		if e.Kind != lethe.AuditReceived || e.Actor != "token:ops" || !e.At.Equal(t0) ||
			e.Detail != "batch of 2500 subjects, 3 merged duplicates" {
			t.Errorf("event = %+v, want received by token:ops at t0 with the counts", e)
		}
		verifyIntact(t, s)
	})

	t.Run("defaults", func(t *testing.T) {
		clk.Advance(time.Hour)
		in := newBatch(time.Time{}, "defaults", 3)
		in.Deadline, in.SubjectTypes = time.Time{}, nil
		in.Subjects[2].Digests = append(in.Subjects[2].Digests, lethe.SubjectDigest{Type: "device_id", Digest: "dd"})
		got := createBatch(t, s, in)
		now := t0.Add(time.Hour)
		if !got.CreatedAt.Equal(now) || !got.Deadline.Equal(now.Add(lethe.DefaultDeadline)) {
			t.Errorf("created %v deadline %v; want the clock and the default deadline", got.CreatedAt, got.Deadline)
		}
		if want := []string{"device_id", "email", "user_id"}; !slices.Equal(got.SubjectTypes, want) {
			t.Errorf("subject types = %v, want %v derived from the subjects", got.SubjectTypes, want)
		}
	})
}

func TestCreateBatchRejectsBadInput(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	tests := []struct {
		name   string
		change func(in *registry.NewBatch)
		kind   lethe.Kind
		code   string
	}{
		{"id not a uuid", func(in *registry.NewBatch) { in.ID = "batch-1" }, lethe.KindInvalid, "invalid_batch_id"},
		{"no subject", func(in *registry.NewBatch) { in.Subjects = nil }, lethe.KindInvalid, "invalid_batch"},
		{"no chunk", func(in *registry.NewBatch) { in.Chunks = nil }, lethe.KindInvalid, "invalid_batch"},
		{"chunks out of order", func(in *registry.NewBatch) { in.Chunks[0].Chunk = 1 }, lethe.KindInvalid, "invalid_batch"},
		{"chunk id not a uuid", func(in *registry.NewBatch) { in.Chunks[0].ID = "c" }, lethe.KindInvalid, "invalid_batch"},
		{"items out of order", func(in *registry.NewBatch) { in.Subjects[1].Item = 2 }, lethe.KindInvalid, "invalid_batch"},
		{"unknown chunk", func(in *registry.NewBatch) { in.Subjects[1].Chunk = 1 }, lethe.KindInvalid, "invalid_batch"},
		{"item id not a uuid", func(in *registry.NewBatch) { in.Subjects[1].ItemID = "i" }, lethe.KindInvalid, "invalid_batch"},
		{"subject without identifier", func(in *registry.NewBatch) { in.Subjects[1].Digests = nil }, lethe.KindInvalid, "invalid_batch"},
		{"negative duplicates", func(in *registry.NewBatch) { in.Duplicates = -1 }, lethe.KindInvalid, "invalid_batch"},
		{"too many subjects", func(in *registry.NewBatch) {
			in.Subjects = make([]registry.NewBatchSubject, lethe.MaxBatchSubjects+1)
		}, lethe.KindTooLarge, "too_many_subjects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newBatch(t0, "rejects", 3)
			tt.change(&in)
			_, _, err := s.CreateBatch(ctx, in, func(context.Context) error {
				t.Errorf("start called for a refused batch")
				return nil
			})
			wantCode(t, err, tt.kind, tt.code)
		})
	}
	if n := queryCount(t, s, `SELECT count(*) FROM erasure_batches`); n != 0 {
		t.Errorf("%d batches recorded by refused calls", n)
	}
}

func TestCreateBatchIdempotency(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	first := newBatch(t0, "idem", 4)
	first.IdempotencyKey = "batch-key-1"
	original := createBatch(t, s, first)
	audit := countAudit(t, s.DB())

	t.Run("same key and body answers the same batch", func(t *testing.T) {
		again := newBatch(t0.Add(time.Minute), "idem", 4)
		again.IdempotencyKey, again.RequestHash = first.IdempotencyKey, first.RequestHash
		got, created, err := s.CreateBatch(ctx, again, func(context.Context) error {
			t.Errorf("start called for a replayed batch")
			return nil
		})
		if err != nil || created {
			t.Fatalf("CreateBatch = created %v, %v; want the existing batch", created, err)
		}
		if !reflect.DeepEqual(got, original) {
			t.Errorf("replay = %+v\nwant the original %+v", got, original)
		}
		if _, err := s.GetBatch(ctx, again.ID); lethe.ErrorCode(err) != "batch_not_found" {
			t.Errorf("the replay's own id was stored: %v", err)
		}
	})

	t.Run("same key with another body conflicts", func(t *testing.T) {
		other := newBatch(t0, "idem-other", 2)
		other.IdempotencyKey = first.IdempotencyKey
		_, _, err := s.CreateBatch(ctx, other, func(context.Context) error {
			t.Errorf("start called for a conflicting batch")
			return nil
		})
		wantCode(t, err, lethe.KindConflict, "idempotency_conflict")
	})

	t.Run("a replay shows the batch's progress", func(t *testing.T) {
		setSubjects(t, s, first.ID, lethe.RequestRunning, 0, 1)
		addOutcome(t, s, first.ID, 0, "orders", lethe.SystemDispatched, 0)
		got, created, err := s.CreateBatch(ctx, first, nil)
		if err != nil || created {
			t.Fatalf("CreateBatch = created %v, %v", created, err)
		}
		if got.Counts != (lethe.BatchCounts{Pending: 2, Running: 2}) || len(got.Systems) != 1 || got.Systems[0].Dispatched != 1 {
			t.Errorf("replay = counts %+v systems %+v; want 2 pending, 2 running, orders dispatched 1", got.Counts, got.Systems)
		}
	})

	if n := queryCount(t, s, `SELECT count(*) FROM erasure_batches`); n != 1 {
		t.Errorf("%d batches, want 1", n)
	}
	if n := countAudit(t, s.DB()); n != audit {
		t.Errorf("replays and conflicts wrote %d audit events", n-audit)
	}
}

// TestCreateBatchConcurrentSameKey sends one submission with one key from
// many callers at once: exactly one creates the batch and starts it.
func TestCreateBatchConcurrentSameKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	const callers = 8
	s.DB().SetMaxOpenConns(callers + 2)
	template := newBatch(t0, "concurrent", 5)
	template.IdempotencyKey = "concurrent-batch"

	var (
		starts  atomic.Int32
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		creates int
		errs    []error
		ready   = make(chan struct{})
	)
	for range callers {
		wg.Go(func() {
			in := template
			in.ID = uuid.NewString()
			<-ready
			b, created, err := s.CreateBatch(ctx, in, func(context.Context) error {
				starts.Add(1)
				time.Sleep(50 * time.Millisecond) // others queue on the key meanwhile
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[b.ID]++
			if created {
				creates++
			}
		})
	}
	close(ready)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d callers failed, first: %v", len(errs), errs[0])
	}
	if creates != 1 || starts.Load() != 1 || len(ids) != 1 {
		t.Errorf("created %d times, started %d times, %d ids; want 1, 1, 1", creates, starts.Load(), len(ids))
	}
	if n := queryCount(t, s, `SELECT count(*) FROM batch_subjects`); n != 5 {
		t.Errorf("%d subjects recorded, want 5", n)
	}
}

func TestCreateBatchStartFailureWritesNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	errTemporal := errors.New("temporal is down")
	in := newBatch(t0, "start-fails", 1200)
	in.IdempotencyKey = "retry-me"
	_, created, err := s.CreateBatch(ctx, in, func(context.Context) error { return errTemporal })
	if !errors.Is(err, errTemporal) || created {
		t.Fatalf("CreateBatch = created %v, %v; want the start error", created, err)
	}
	for _, table := range []string{"erasure_batches", "batch_chunks", "batch_subjects", "batch_subject_digests", "audit_events"} {
		if n := queryCount(t, s, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%s has %d rows after a failed start, want 0", table, n)
		}
	}
	if ok, err := s.BatchRecorded(ctx, in.ID); ok || err != nil {
		t.Errorf("BatchRecorded = %v, %v; want false", ok, err)
	}
	// The key is free again: the client's retry creates the batch.
	createBatch(t, s, in)
	if ok, err := s.BatchRecorded(ctx, in.ID); !ok || err != nil {
		t.Errorf("BatchRecorded = %v, %v; want true", ok, err)
	}
}

// The API starts a batch's workflow inside the transaction that records
// it; the workflow asks BatchRecorded before it does anything.
func TestBatchRecordedWaitsForTheCreation(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	check := func(id string) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return s.BatchRecorded(cctx, id)
	}
	for _, tc := range []struct {
		name   string
		start  error
		wantOK bool
	}{
		{"committed after the check began", nil, true},
		{"rolled back after the check began", errors.New("temporal is down"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newBatch(t0, "recorded", 3)
			type answer struct {
				ok  bool
				err error
			}
			answers := make(chan answer, 1)
			_, _, err := s.CreateBatch(ctx, in, func(context.Context) error {
				go func() {
					ok, err := check(in.ID)
					answers <- answer{ok, err}
				}()
				select {
				case a := <-answers:
					t.Errorf("BatchRecorded answered %v, %v before the creating transaction ended", a.ok, a.err)
					answers <- a
				case <-time.After(300 * time.Millisecond):
				}
				return tc.start
			})
			if !errors.Is(err, tc.start) {
				t.Fatalf("CreateBatch: %v", err)
			}
			if a := <-answers; a.err != nil || a.ok != tc.wantOK {
				t.Errorf("BatchRecorded = %v, %v; want %v", a.ok, a.err, tc.wantOK)
			}
		})
	}
	if ok, err := check("not-a-uuid"); ok || err != nil {
		t.Errorf("BatchRecorded(not a uuid) = %v, %v; want false", ok, err)
	}
}

// largeBatch is the size of TestCreateLargeBatch's batch: large enough to
// cross the insert's slices of 10,000 rows and to need many chunks, small
// enough for CI. lethe bench --bulk measures 100,000.
const largeBatch = 20_000

// TestCreateLargeBatch records a batch of largeBatch subjects
// and logs how long each step over it takes; it asserts what was written,
// not the time, which depends on the machine.
func TestCreateLargeBatch(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newBatch(t0, "large", largeBatch)

	began := time.Now()
	b := createBatch(t, s, in)
	t.Logf("CreateBatch of %d subjects with 2 digests each: %v", b.Total, time.Since(began))
	if n := queryCount(t, s, `SELECT count(*) FROM batch_subject_digests WHERE batch_id = $1`, in.ID); n != 2*largeBatch {
		t.Errorf("%d digests, want %d", n, 2*largeBatch)
	}
	if n := queryCount(t, s, `SELECT count(*) FROM batch_chunks WHERE batch_id = $1`, in.ID); n != largeBatch/1000 {
		t.Errorf("%d chunks, want %d", n, largeBatch/1000)
	}

	began = time.Now()
	got, err := s.GetBatch(ctx, in.ID)
	t.Logf("GetBatch: %v", time.Since(began))
	if err != nil || got.Counts.Pending != largeBatch {
		t.Errorf("GetBatch = %+v, %v; want every subject pending", got.Counts, err)
	}

	exec(t, s, `UPDATE batch_subjects SET status = 'completed' WHERE batch_id = $1`, in.ID)
	exec(t, s, `INSERT INTO batch_outcomes (batch_id, item, system, status, records, updated_at)
		SELECT $1, item, 'orders', 'erased', 1, $2 FROM batch_subjects WHERE batch_id = $1`, in.ID, t0)
	finishBatch(t, s, in.ID, lethe.RequestCompleted, t0.Add(time.Hour))
	testenv.SettleTransactions(t, s.DB())

	began = time.Now()
	leaves, err := s.BatchLeaves(ctx, in.ID)
	t.Logf("BatchLeaves: %v", time.Since(began))
	if err != nil || len(leaves) != largeBatch {
		t.Errorf("BatchLeaves = %d leaves, %v", len(leaves), err)
	}
	began = time.Now()
	facts, err := s.BatchCertificateFacts(ctx, in.ID)
	t.Logf("BatchCertificateFacts: %v", time.Since(began))
	if err != nil || facts.Leaves.Size() != largeBatch {
		t.Errorf("BatchCertificateFacts = %v; want %d leaves", err, largeBatch)
	}

	// Paging the suppression list never sorts the whole batch: a page in
	// its middle is as quick as the first.
	f := registry.SuppressionFilter{Limit: registry.MaxSuppressionLimit}
	for page := range 3 {
		began = time.Now()
		p, err := s.ListSuppressions(ctx, f)
		t.Logf("ListSuppressions page %d of %d entries: %v", page+1, len(p.Items), time.Since(began))
		if err != nil || len(p.Items) != registry.MaxSuppressionLimit || !p.More {
			t.Fatalf("page %d = %d entries, more %v, %v", page+1, len(p.Items), p.More, err)
		}
		f.Cursor = p.NextCursor
	}
}

func TestGetBatch(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newBatch(t0, "get", 6)
	createBatch(t, s, in)
	setSubjects(t, s, in.ID, lethe.RequestRunning, 0, 1)
	setSubjects(t, s, in.ID, lethe.RequestCompleted, 2, 3)
	setSubjects(t, s, in.ID, lethe.RequestFailed, 4)
	for item := range 5 {
		addOutcome(t, s, in.ID, item, "orders", lethe.SystemErased, int64(item+1))
	}
	addOutcome(t, s, in.ID, 0, "crm", lethe.SystemDispatched, 0)
	addOutcome(t, s, in.ID, 1, "crm", lethe.SystemPending, 0)
	addOutcome(t, s, in.ID, 2, "crm", lethe.SystemNotFound, 0)
	addOutcome(t, s, in.ID, 3, "crm", lethe.SystemRetained, 7)
	addOutcome(t, s, in.ID, 4, "crm", lethe.SystemFailed, 0)
	addOutcome(t, s, in.ID, 5, "billing", lethe.SystemPending, 0)

	got, err := s.GetBatch(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (lethe.BatchCounts{Pending: 1, Running: 2, Completed: 2, Failed: 1}); got.Counts != want {
		t.Errorf("counts = %+v, want %+v", got.Counts, want)
	}
	want := []lethe.BatchSystemCounts{
		{Name: "billing", Pending: 1},
		{Name: "crm", Pending: 1, Dispatched: 1, NotFound: 1, Retained: 1, Failed: 1, Records: 7},
		{Name: "orders", Erased: 5, Records: 15},
	}
	if !reflect.DeepEqual(got.Systems, want) {
		t.Errorf("systems = %+v\nwant %+v", got.Systems, want)
	}

	for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
		_, err := s.GetBatch(ctx, id)
		wantCode(t, err, lethe.KindNotFound, "batch_not_found")
	}
}

// TestBatchValuesNeverStored is the canary: the registry receives digests
// only, and no identifier value of a batch reaches any table, while its
// digests are there.
func TestBatchValuesNeverStored(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newBatch(t0, "canary", 20)
	createBatch(t, s, in)
	addOutcome(t, s, in.ID, 0, "orders", lethe.SystemFailed, 0)
	if _, err := s.RetryBatch(ctx, in.ID, "oidc:admin", nil, nil); err != nil {
		t.Fatalf("RetryBatch: %v", err)
	}
	if err := s.AuditBatchCancel(ctx, in.ID, "oidc:admin"); err != nil {
		t.Fatal(err)
	}

	rows, err := s.DB().QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
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
	rows.Close()
	var dump strings.Builder
	for _, table := range tables {
		var text sql.NullString
		if err := s.DB().QueryRowContext(ctx,
			`SELECT string_agg(t::text, E'\n') FROM `+table+` t`).Scan(&text); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		dump.WriteString(text.String)
	}
	for i := range len(in.Subjects) {
		for _, idType := range []string{"email", "user_id"} {
			if v := batchValue("canary", i, idType); strings.Contains(dump.String(), v) {
				t.Errorf("the value of subject %d's %s is stored", i, idType)
			}
			if d := batchDigest("canary", i, idType); !strings.Contains(dump.String(), d) {
				t.Errorf("the digest of subject %d's %s is not stored", i, idType)
			}
		}
	}
	// The tag is part of every value; even it appears nowhere.
	if strings.Contains(dump.String(), "canary-") {
		t.Errorf("a fragment of an identifier value is stored")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
