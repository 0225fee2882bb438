package registry_test

import (
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/registry"
)

// TestApplyBatchLedger writes a chunk's steps as the workflows do: many
// subjects' outcomes and statuses per statement, learned digests, the
// batch's status, and the audit, each delta once.
func TestApplyBatchLedger(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newBatch(t0, "ledger", 3)
	createBatch(t, s, in)
	confirmed := t0.Add(time.Minute)
	steps := []registry.BatchDelta{
		{BatchID: in.ID, Name: "c0.1",
			Outcomes: []registry.OutcomeGroup{{System: "orders", Status: lethe.SystemDispatched, Attempts: 1, Items: []int{0, 1, 2}}},
			Subjects: []registry.SubjectGroup{{Status: lethe.RequestRunning, Items: []int{0, 1, 2}}},
			Status:   lethe.RequestRunning,
			Events:   []lethe.AuditEvent{{Kind: lethe.AuditDispatched, System: "orders", Detail: "chunk 0: 3 subjects", At: t0}}},
		{BatchID: in.ID, Name: "c0.2",
			Outcomes: []registry.OutcomeGroup{
				{System: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 2, ConfirmedAt: &confirmed, Items: []int{0, 2}},
				{System: "orders", Status: lethe.SystemFailed, Attempts: 1, Detail: "locked", ConfirmedAt: &confirmed, Items: []int{1}},
			},
			Subjects: []registry.SubjectGroup{{Status: lethe.RequestCompleted, Items: []int{0, 2}}, {Status: lethe.RequestFailed, Items: []int{1}}},
			Learned:  []registry.BatchDigest{{Item: 2, Type: "account_id", Digest: "d-acct"}},
			Events:   []lethe.AuditEvent{{Kind: lethe.AuditConfirmed, System: "orders", Detail: "chunk 0: erased 2, failed 1", At: confirmed}}},
		{BatchID: in.ID, Name: "end.1", Status: lethe.RequestFailed, CompletedAt: &confirmed,
			Events: []lethe.AuditEvent{{Kind: lethe.AuditFailed, Detail: "2 completed, 1 failed, 0 canceled", At: confirmed}}},
	}
	for _, d := range steps {
		if applied, err := s.ApplyBatchLedger(ctx, d); err != nil || !applied {
			t.Fatalf("apply %s: %v", d.Name, err)
		}
	}
	// A delta written again changes nothing and adds no event.
	events := queryCount(t, s, `SELECT count(*) FROM audit_events WHERE request_id = $1`, in.ID)
	if applied, err := s.ApplyBatchLedger(ctx, steps[1]); err != nil || applied {
		t.Fatalf("a delta written again: applied %v, %v; want false", applied, err)
	}
	if again := queryCount(t, s, `SELECT count(*) FROM audit_events WHERE request_id = $1`, in.ID); again != events {
		t.Errorf("a delta written again added %d events", again-events)
	}

	b, err := s.GetBatch(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != lethe.RequestFailed || b.CompletedAt == nil || !b.CompletedAt.Equal(confirmed) ||
		b.Counts != (lethe.BatchCounts{Completed: 2, Failed: 1}) {
		t.Errorf("batch = %s %v %+v", b.Status, b.CompletedAt, b.Counts)
	}
	if len(b.Systems) != 1 || b.Systems[0].Erased != 2 || b.Systems[0].Failed != 1 || b.Systems[0].Records != 4 {
		t.Errorf("systems = %+v, want orders with 2 erased (4 records) and 1 failed", b.Systems)
	}
	subs, _, err := s.ListBatchSubjects(ctx, registry.BatchSubjectFilter{BatchID: in.ID, Status: lethe.RequestFailed})
	if err != nil || len(subs) != 1 || subs[0].Item != 1 || subs[0].Systems[0].Detail != "locked" {
		t.Errorf("failed subjects = %+v, %v", subs, err)
	}
	if n := queryCount(t, s, `SELECT count(*) FROM batch_subject_digests WHERE batch_id = $1 AND item = 2 AND derived`, in.ID); n != 1 {
		t.Errorf("%d learned digests recorded, want 1", n)
	}
	// A retry reopens it: the next final status stamps it anew.
	if _, err := s.ApplyBatchLedger(ctx, registry.BatchDelta{BatchID: in.ID, Name: "reopen", Status: lethe.RequestRunning}); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.GetBatch(ctx, in.ID); b.Status != lethe.RequestRunning || b.CompletedAt != nil {
		t.Errorf("reopened batch = %s %v, want running without a completion time", b.Status, b.CompletedAt)
	}
	if v, err := s.VerifyAudit(ctx); err != nil || !v.Intact() {
		t.Errorf("audit chain after the batch's writes: %+v, %v", v, err)
	}
}

// TestApplyBatchLedgerRefusals names the batch and the statuses it checks.
func TestApplyBatchLedgerRefusals(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newBatch(t0, "refusals", 1)
	createBatch(t, s, in)
	cases := map[string]struct {
		d    registry.BatchDelta
		code string
	}{
		"unknown batch":  {registry.BatchDelta{BatchID: "0b5c0000-0000-4000-8000-0000000000ff", Name: "x"}, "batch_not_found"},
		"not a uuid":     {registry.BatchDelta{BatchID: "nope", Name: "x"}, "batch_not_found"},
		"batch status":   {registry.BatchDelta{BatchID: in.ID, Name: "x", Status: "done"}, "invalid_status"},
		"system status":  {registry.BatchDelta{BatchID: in.ID, Name: "x", Outcomes: []registry.OutcomeGroup{{System: "a", Status: "gone", Items: []int{0}}}}, "invalid_status"},
		"subject status": {registry.BatchDelta{BatchID: in.ID, Name: "x", Subjects: []registry.SubjectGroup{{Status: "gone", Items: []int{0}}}}, "invalid_status"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := s.ApplyBatchLedger(ctx, c.d); lethe.ErrorCode(err) != c.code {
				t.Errorf("ApplyBatchLedger = %v, want %s", err, c.code)
			}
		})
	}
}

// TestMatchBatch finds a chunk's systems and the holds on its digests in
// two queries: a hold on one system, a hold on all, and an expired one.
func TestMatchBatch(t *testing.T) {
	s, _ := newStore(t)
	ctx := testContext(t)
	for _, sys := range []lethe.System{
		{Name: "orders", Identifiers: []string{"email"}, Batch: true},
		{Name: "crm", Identifiers: []string{"user_id"}},
		{Name: "billing", Identifiers: []string{"account_id"}},
	} {
		if _, _, err := s.PutSystem(ctx, sys, registry.SystemWrite{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	past := t0.Add(-time.Hour)
	for _, h := range []registry.NewHold{
		{ID: "crm-only", System: "crm", Basis: "litigation", Subject: []lethe.SubjectDigest{{Type: "email", Digest: "d1"}}},
		{ID: "everywhere", Basis: "tax", Subject: []lethe.SubjectDigest{{Type: "user_id", Digest: "d2"}}},
		{ID: "expired", Basis: "old", ExpiresAt: &past, Subject: []lethe.SubjectDigest{{Type: "email", Digest: "d3"}}},
	} {
		h.PlacedBy = "test"
		if _, _, err := s.PutHold(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	systems, holds, err := s.MatchBatch(ctx, []string{"email", "user_id"},
		[]lethe.SubjectDigest{{Type: "email", Digest: "d1"}, {Type: "user_id", Digest: "d2"}, {Type: "email", Digest: "d3"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(systems) != 2 || systems[0].Name != "crm" || systems[1].Name != "orders" || !systems[1].Batch {
		t.Errorf("systems = %+v, want crm and the batch-capable orders", systems)
	}
	got := map[string]string{}
	for _, h := range holds {
		got[h.Hold.ID] = h.System + "/" + h.Digest.Digest
	}
	if len(got) != 2 || got["crm-only"] != "crm/d1" || got["everywhere"] != "/d2" {
		t.Errorf("holds = %v, want crm-only on crm for d1 and everywhere for d2, not the expired one", got)
	}
}
