package registry_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

func TestCreateErasure(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	in := newErasure(t0,
		lethe.SubjectDigest{Type: "user_id", Digest: "d1"},
		lethe.SubjectDigest{Type: "email", Digest: "d2"},
		lethe.SubjectDigest{Type: "email", Digest: "d3"},
	)
	in.DryRun = true
	var started int
	got, created, err := s.CreateErasure(ctx, in, func(context.Context) error {
		started++
		return nil
	})
	if err != nil {
		t.Fatalf("CreateErasure: %v", err)
	}
	if !created || started != 1 {
		t.Errorf("created = %v, start calls = %d; want true, 1", created, started)
	}
	want := lethe.Erasure{
		ID:           in.ID,
		Status:       lethe.RequestPending,
		SubjectTypes: []string{"email", "user_id"},
		Reason:       in.Reason,
		RequestedBy:  in.RequestedBy,
		DryRun:       true,
		CreatedAt:    t0,
		Deadline:     t0.Add(lethe.DefaultDeadline),
		// No target given: two days before the deadline.
		Target:     t0.Add(lethe.DefaultDeadline - lethe.DefaultTargetBefore),
		WorkflowID: in.WorkflowID,
		Systems:    []lethe.SystemProgress{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CreateErasure = %+v\nwant %+v", got, want)
	}

	t.Run("get returns the same request", func(t *testing.T) {
		fetched, err := s.GetErasure(ctx, in.ID)
		if err != nil {
			t.Fatalf("GetErasure: %v", err)
		}
		if !reflect.DeepEqual(fetched, want) {
			t.Errorf("GetErasure = %+v\nwant %+v", fetched, want)
		}
	})
	t.Run("subject digests are stored", func(t *testing.T) {
		digests, err := s.SubjectDigests(ctx, in.ID)
		if err != nil {
			t.Fatalf("SubjectDigests: %v", err)
		}
		wantDigests := []lethe.SubjectDigest{
			{Type: "email", Digest: "d2"}, {Type: "email", Digest: "d3"}, {Type: "user_id", Digest: "d1"},
		}
		if !reflect.DeepEqual(digests, wantDigests) {
			t.Errorf("SubjectDigests = %v, want %v", digests, wantDigests)
		}
	})
	t.Run("a received event is audited", func(t *testing.T) {
		events, err := s.Audit(ctx, in.ID)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		wantEvents := []lethe.AuditEvent{{RequestID: in.ID, Kind: lethe.AuditReceived, At: t0}}
		if !reflect.DeepEqual(events, wantEvents) {
			t.Errorf("Audit = %+v, want %+v", events, wantEvents)
		}
	})
	t.Run("defaults for the times", func(t *testing.T) {
		in := newErasure(time.Time{})
		in.Deadline = time.Time{}
		got := create(t, s, in)
		if !got.CreatedAt.Equal(t0) || !got.Deadline.Equal(t0.Add(lethe.DefaultDeadline)) {
			t.Errorf("created_at, deadline = %v, %v; want the clock %v and a month later", got.CreatedAt, got.Deadline, t0)
		}
	})
}

func TestCreateErasureRejectsBadInput(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	tests := []struct {
		name string
		edit func(*registry.NewErasure)
		code string
	}{
		{"id not a UUID", func(in *registry.NewErasure) { in.ID = "req-1" }, "invalid_request_id"},
		{"no subject", func(in *registry.NewErasure) { in.Subject = nil }, "invalid_subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newErasure(t0)
			tt.edit(&in)
			_, _, err := s.CreateErasure(ctx, in, func(context.Context) error {
				t.Errorf("start called for invalid input")
				return nil
			})
			wantCode(t, err, lethe.KindInvalid, tt.code)
		})
	}
}

func TestCreateErasureIdempotency(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	first := newErasure(t0)
	first.IdempotencyKey = "key-1"
	original := create(t, s, first)

	t.Run("same key and body answers the same request", func(t *testing.T) {
		again := newErasure(t0.Add(time.Minute))
		again.IdempotencyKey, again.RequestHash = first.IdempotencyKey, first.RequestHash
		got, created, err := s.CreateErasure(ctx, again, func(context.Context) error {
			t.Errorf("start called for a replayed request")
			return nil
		})
		if err != nil {
			t.Fatalf("CreateErasure: %v", err)
		}
		if created {
			t.Errorf("created = true, want false for a replay")
		}
		if !reflect.DeepEqual(got, original) {
			t.Errorf("replay = %+v\nwant the original %+v", got, original)
		}
	})

	t.Run("same key with another body conflicts", func(t *testing.T) {
		other := newErasure(t0)
		other.IdempotencyKey = first.IdempotencyKey
		_, _, err := s.CreateErasure(ctx, other, func(context.Context) error {
			t.Errorf("start called for a conflicting request")
			return nil
		})
		wantCode(t, err, lethe.KindConflict, "idempotency_conflict")
		if _, err := s.GetErasure(ctx, other.ID); lethe.ErrorCode(err) != "erasure_not_found" {
			t.Errorf("conflicting request was stored: GetErasure err = %v", err)
		}
	})

	t.Run("a replay shows the request's progress", func(t *testing.T) {
		if err := s.ApplyLedger(ctx, first.ID, lethe.LedgerDelta{
			Status:  lethe.RequestRunning,
			Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemDispatched, Attempts: 1}},
		}); err != nil {
			t.Fatalf("ApplyLedger: %v", err)
		}
		got, _, err := s.CreateErasure(ctx, first, nil)
		if err != nil {
			t.Fatalf("CreateErasure: %v", err)
		}
		if got.Status != lethe.RequestRunning || len(got.Systems) != 1 {
			t.Errorf("replay = status %s, %d systems; want running with 1 system", got.Status, len(got.Systems))
		}
	})
}

// TestCreateErasureConcurrentSameKey holds the first creator inside start
// until another caller is seen waiting on the idempotency key's index entry,
// so the test exercises the wait rather than twenty calls in a row.
func TestCreateErasureConcurrentSameKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	const callers = 20
	// Every caller holds a connection while it waits on the key, and the
	// first one's start watches pg_stat_activity on one more: the pool must
	// fit them all, or the waiters starve the watcher.
	s.DB().SetMaxOpenConns(callers + 4)
	template := newErasure(t0)
	template.IdempotencyKey = "concurrent-key"

	var (
		starts     atomic.Int32
		sawWaiting atomic.Bool
		ready      = make(chan struct{})
		wg         sync.WaitGroup
		mu         sync.Mutex
		ids        = map[string]int{}
		creates    int
		errs       []error
	)
	start := func(ctx context.Context) error {
		starts.Add(1)
		for ctx.Err() == nil {
			var waiting int
			err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
			if err != nil {
				return err
			}
			if waiting > 0 {
				sawWaiting.Store(true)
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return ctx.Err()
	}
	for range callers {
		wg.Go(func() {
			in := template
			in.ID = uuid.NewString() // each caller would mint its own id
			<-ready
			e, created, err := s.CreateErasure(ctx, in, start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[e.ID]++
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
	if creates != 1 {
		t.Errorf("created = true for %d callers, want 1", creates)
	}
	if n := starts.Load(); n != 1 {
		t.Errorf("start called %d times, want 1", n)
	}
	if len(ids) != 1 {
		t.Errorf("callers got %d different ids, want 1: %v", len(ids), ids)
	}
	if !sawWaiting.Load() {
		t.Errorf("no caller was seen waiting on the key while the first was starting")
	}
	var rows int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM erasure_requests`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("erasure_requests has %d rows, want 1", rows)
	}
}

func TestCreateErasureStartFailureWritesNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	errTemporal := errors.New("temporal is down")
	in := newErasure(t0)
	in.IdempotencyKey = "retry-me"
	_, created, err := s.CreateErasure(ctx, in, func(context.Context) error { return errTemporal })
	if !errors.Is(err, errTemporal) {
		t.Fatalf("CreateErasure err = %v, want the start error", err)
	}
	if created {
		t.Errorf("created = true after a failed start")
	}
	for _, table := range []string{"erasure_requests", "request_subjects", "erasure_systems", "audit_events"} {
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if n != 0 {
			t.Errorf("%s has %d rows after a failed start, want 0", table, n)
		}
	}

	// The key is free again: the client's retry creates the request.
	if _, created, err := s.CreateErasure(ctx, in, func(context.Context) error { return nil }); err != nil || !created {
		t.Errorf("retry after a failed start = created %v, err %v; want created", created, err)
	}
}

func TestGetErasure(t *testing.T) {
	t.Parallel()
	s, clk := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	confirmed := t0.Add(2 * time.Second)
	if err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{Systems: []lethe.SystemProgress{
		{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 3, ConfirmedAt: &confirmed},
		{Name: "billing", Status: lethe.SystemDispatched, Attempts: 2},
	}}); err != nil {
		t.Fatalf("ApplyLedger: %v", err)
	}
	clk.Advance(time.Hour)

	t.Run("systems by name", func(t *testing.T) {
		got, err := s.GetErasure(ctx, in.ID)
		if err != nil {
			t.Fatalf("GetErasure: %v", err)
		}
		want := []lethe.SystemProgress{
			{Name: "billing", Status: lethe.SystemDispatched, Attempts: 2},
			{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 3, ConfirmedAt: &confirmed},
		}
		if !reflect.DeepEqual(got.Systems, want) {
			t.Errorf("systems = %+v\nwant %+v", got.Systems, want)
		}
	})
	t.Run("an uppercase id finds the same request", func(t *testing.T) {
		got, err := s.GetErasure(ctx, strings.ToUpper(in.ID))
		if err != nil || got.ID != in.ID {
			t.Errorf("GetErasure(upper) = %q, %v; want %q", got.ID, err, in.ID)
		}
	})
	for _, tt := range []struct{ name, id string }{
		{"unknown", uuid.NewString()},
		{"malformed", "not-a-uuid"},
		{"empty", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.GetErasure(ctx, tt.id)
			wantCode(t, err, lethe.KindNotFound, "erasure_not_found")
		})
	}
}

func TestListErasures(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	// Seven requests a minute apart; two share a created_at so that the id
	// must break the tie. Every third one is running.
	var all []string // newest first
	for i := range 7 {
		at := t0.Add(time.Duration(i) * time.Minute)
		if i == 6 {
			at = t0.Add(5 * time.Minute)
		}
		in := newErasure(at)
		create(t, s, in)
		if i%3 == 0 {
			if err := s.ApplyLedger(ctx, in.ID, lethe.LedgerDelta{
				Status:  lethe.RequestRunning,
				Systems: []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemDispatched, Attempts: 1}},
			}); err != nil {
				t.Fatalf("ApplyLedger: %v", err)
			}
		}
		all = append(all, in.ID)
	}
	newestFirst := func(ids []string) []string {
		var out []string
		rows, err := s.DB().QueryContext(ctx,
			`SELECT id FROM erasure_requests WHERE id = ANY ($1::uuid[]) ORDER BY created_at DESC, id DESC`,
			pq.Array(ids))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	running := []string{all[0], all[3], all[6]}

	tests := []struct {
		name      string
		status    lethe.RequestStatus
		limit     int
		want      []string
		wantPages int
	}{
		{"all, three per page", "", 3, newestFirst(all), 3},
		{"all in one page", "", 0, newestFirst(all), 1},
		{"exactly one page's worth", "", 7, newestFirst(all), 1},
		{"running, two per page", lethe.RequestRunning, 2, newestFirst(running), 2},
		{"completed: none", lethe.RequestCompleted, 3, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				seen   []string
				cursor string
				pages  int
			)
			for {
				pages++
				if pages > 10 {
					t.Fatalf("more than 10 pages; cursor does not advance")
				}
				items, next, err := s.ListErasures(ctx, registry.ErasureFilter{Status: tt.status, Limit: tt.limit, Cursor: cursor})
				if err != nil {
					t.Fatalf("ListErasures page %d: %v", pages, err)
				}
				if items == nil {
					t.Fatalf("page %d items = nil, want a non-nil slice", pages)
				}
				if tt.limit > 0 && len(items) > tt.limit {
					t.Errorf("page %d has %d items, limit %d", pages, len(items), tt.limit)
				}
				for _, e := range items {
					seen = append(seen, e.ID)
					if tt.status != "" && e.Status != tt.status {
						t.Errorf("item %s has status %s, filter %s", e.ID, e.Status, tt.status)
					}
					if e.Systems == nil {
						t.Errorf("item %s systems = nil, want a non-nil slice", e.ID)
					}
					if e.Status == lethe.RequestRunning && len(e.Systems) != 1 {
						t.Errorf("item %s has %d systems, want its 1", e.ID, len(e.Systems))
					}
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if !reflect.DeepEqual(seen, tt.want) {
				t.Errorf("visited %v\nwant %v", seen, tt.want)
			}
			if pages != tt.wantPages {
				t.Errorf("pages = %d, want %d", pages, tt.wantPages)
			}
		})
	}

	t.Run("malformed cursor", func(t *testing.T) {
		for _, c := range []string{"not base64!", "AAAA", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"} {
			_, _, err := s.ListErasures(ctx, registry.ErasureFilter{Cursor: c})
			wantCode(t, err, lethe.KindInvalid, "invalid_cursor")
		}
	})
	t.Run("unknown status", func(t *testing.T) {
		_, _, err := s.ListErasures(ctx, registry.ErasureFilter{Status: "done"})
		wantCode(t, err, lethe.KindInvalid, "invalid_status")
	})
}

func TestSubjectDigestsUnknownRequest(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	for _, id := range []string{uuid.NewString(), "nope"} {
		_, err := s.SubjectDigests(ctx, id)
		wantCode(t, err, lethe.KindNotFound, "erasure_not_found")
	}
}
