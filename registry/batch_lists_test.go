package registry_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

func TestListBatches(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	var ids []string
	for i := range 5 {
		at := t0.Add(time.Duration(i) * time.Minute)
		if i == 2 {
			at = t0.Add(time.Minute) // ties with batch 1: the id orders them
		}
		in := newBatch(at, fmt.Sprintf("list-%d", i), i+1)
		createBatch(t, s, in)
		ids = append(ids, in.ID)
	}
	setSubjects(t, s, ids[3], lethe.RequestCompleted, 0, 1, 2, 3)
	finishBatch(t, s, ids[3], lethe.RequestCompleted, t0.Add(time.Hour))
	addOutcome(t, s, ids[4], 0, "orders", lethe.SystemErased, 1)

	tie := []string{ids[1], ids[2]}
	slices.Sort(tie)
	newestFirst := []string{ids[4], ids[3], tie[1], tie[0], ids[0]}

	var all []lethe.Batch
	cursor := ""
	for range 10 {
		page, next, err := s.ListBatches(ctx, registry.BatchFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, limit 2", len(page))
		}
		all = append(all, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	var got []string
	for _, b := range all {
		got = append(got, b.ID)
		if b.Systems == nil || len(b.Systems) != 0 {
			t.Errorf("batch %s lists systems %v, want an empty list", b.ID, b.Systems)
		}
		want := lethe.BatchCounts{Pending: b.Total}
		if b.ID == ids[3] {
			want = lethe.BatchCounts{Completed: 4}
		}
		if b.Counts != want {
			t.Errorf("batch %s counts = %+v, want %+v", b.ID, b.Counts, want)
		}
	}
	if !slices.Equal(got, newestFirst) {
		t.Errorf("paged = %v\nwant %v", got, newestFirst)
	}

	t.Run("status", func(t *testing.T) {
		page, next, err := s.ListBatches(ctx, registry.BatchFilter{Status: lethe.RequestCompleted})
		if err != nil || len(page) != 1 || page[0].ID != ids[3] || next != "" || page[0].CompletedAt == nil {
			t.Errorf("completed = %+v, %q, %v; want batch 3 alone", page, next, err)
		}
	})
	t.Run("rejects", func(t *testing.T) {
		_, _, err := s.ListBatches(ctx, registry.BatchFilter{Status: "done"})
		wantCode(t, err, lethe.KindInvalid, "invalid_status")
		_, _, err = s.ListBatches(ctx, registry.BatchFilter{Cursor: "!!"})
		wantCode(t, err, lethe.KindInvalid, "invalid_cursor")
	})
}

func TestListBatchSubjects(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newBatch(t0, "subjects", 7)
	createBatch(t, s, in)
	setSubjects(t, s, in.ID, lethe.RequestFailed, 2, 5)
	setSubjects(t, s, in.ID, lethe.RequestCompleted, 4)
	addOutcome(t, s, in.ID, 2, "orders", lethe.SystemFailed, 0)
	addOutcome(t, s, in.ID, 2, "crm", lethe.SystemErased, 3)
	exec(t, s, `UPDATE batch_outcomes SET confirmed_at = $2 WHERE batch_id = $1 AND system = 'crm'`, in.ID, t0.Add(time.Minute))
	exec(t, s, `INSERT INTO batch_subject_digests (batch_id, item, id_type, digest, derived) VALUES ($1, 4, 'device_id', 'dd', true)`, in.ID)

	var (
		all    []lethe.BatchSubject
		cursor string
		pages  int
	)
	for range 10 {
		page, next, err := s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: in.ID, Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	if pages != 3 || len(all) != 7 {
		t.Fatalf("%d pages, %d subjects; want 3 pages of 7 subjects", pages, len(all))
	}
	for i, sub := range all {
		if sub.Item != i {
			t.Errorf("subject %d has item %d", i, sub.Item)
		}
	}
	wantDigests := func(i int) []lethe.SubjectDigest { return in.Subjects[i].Digests }
	if got := all[0]; got.Status != lethe.RequestPending || !reflect.DeepEqual(got.Identifiers, wantDigests(0)) ||
		got.Systems == nil || len(got.Systems) != 0 {
		t.Errorf("subject 0 = %+v, want pending with its digests and no system", got)
	}
	if got, want := all[4].Identifiers, append([]lethe.SubjectDigest{{Type: "device_id", Digest: "dd"}}, wantDigests(4)...); !reflect.DeepEqual(got, want) {
		t.Errorf("subject 4 identifiers = %v, want %v (the derived one too, by type)", got, want)
	}
	wantSystems := []lethe.SystemProgress{
		{Name: "crm", Status: lethe.SystemErased, Attempts: 1, Records: 3, ConfirmedAt: ptr(t0.Add(time.Minute)), Detail: "detail of crm"},
		{Name: "orders", Status: lethe.SystemFailed, Attempts: 1, Detail: "detail of orders"},
	}
	if got := all[2]; got.Status != lethe.RequestFailed || !reflect.DeepEqual(got.Systems, wantSystems) {
		t.Errorf("subject 2 = %+v\nwant failed with systems %+v", got, wantSystems)
	}

	t.Run("status", func(t *testing.T) {
		page, next, err := s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: in.ID, Status: lethe.RequestFailed, Limit: 1})
		if err != nil || len(page) != 1 || page[0].Item != 2 || next == "" {
			t.Fatalf("first failed = %+v, %q, %v; want item 2 and a cursor", page, next, err)
		}
		page, next, err = s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: in.ID, Status: lethe.RequestFailed, Cursor: next})
		if err != nil || len(page) != 1 || page[0].Item != 5 || next != "" {
			t.Errorf("next failed = %+v, %q, %v; want item 5, last page", page, next, err)
		}
	})
	t.Run("rejects", func(t *testing.T) {
		for _, id := range []string{uuid.NewString(), "nope"} {
			_, _, err := s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: id})
			wantCode(t, err, lethe.KindNotFound, "batch_not_found")
		}
		_, _, err := s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: in.ID, Status: "done"})
		wantCode(t, err, lethe.KindInvalid, "invalid_status")
		// A cursor of ListBatches is not one of this list.
		createBatch(t, s, newBatch(t0, "subjects-2", 1))
		_, listCursor, err := s.ListBatches(ctx, registry.BatchFilter{Limit: 1})
		if err != nil || listCursor == "" {
			t.Fatalf("ListBatches gave no cursor: %v", err)
		}
		for _, c := range []string{"!!", "AAAA", listCursor} {
			_, _, err = s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: in.ID, Cursor: c})
			wantCode(t, err, lethe.KindInvalid, "invalid_cursor")
		}
	})
}
