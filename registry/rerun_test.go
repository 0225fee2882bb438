package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
)

// A worker that dies after writing the ledger but before Temporal recorded
// it leaves the next worker to write the same delta again; internal/faults
// kills real workers to check the whole, this pins the ledger's part.
func TestApplyLedgerBatchAppliedOnce(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)
	in := newErasure(t0)
	create(t, s, in)
	delta := lethe.LedgerDelta{
		Status:      lethe.RequestCompleted,
		CompletedAt: ptr(t0.Add(time.Minute)),
		Systems:     []lethe.SystemProgress{{Name: "orders", Status: lethe.SystemErased, Attempts: 1, Records: 2}},
		Events:      []lethe.AuditEvent{{Kind: lethe.AuditCompleted, At: t0.Add(time.Minute)}},
		Batch:       "run-1/7",
	}
	for i := range 3 {
		if err := s.ApplyLedger(ctx, in.ID, delta); err != nil {
			t.Fatalf("ApplyLedger #%d: %v", i+1, err)
		}
	}
	// Another batch of the same request is applied: names are per request.
	other := lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditConfirmationLate, At: t0}}, Batch: "run-1/8"}
	if err := s.ApplyLedger(ctx, in.ID, other); err != nil {
		t.Fatal(err)
	}
	events, err := s.Audit(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []lethe.AuditKind
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	want := []lethe.AuditKind{lethe.AuditReceived, lethe.AuditCompleted, lethe.AuditConfirmationLate}
	if len(kinds) != len(want) || kinds[1] != want[1] || kinds[2] != want[2] {
		t.Errorf("audit = %v, want %v: a repeated batch must append nothing", kinds, want)
	}
	// Unnamed deltas keep their old behaviour.
	unnamed := lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditConfirmationLate, At: t0}}}
	for range 2 {
		if err := s.ApplyLedger(ctx, in.ID, unnamed); err != nil {
			t.Fatal(err)
		}
	}
	if events, _ = s.Audit(ctx, in.ID); len(events) != len(want)+2 {
		t.Errorf("audit has %d events after two unnamed deltas, want %d", len(events), len(want)+2)
	}
}

// The API starts a request's workflow inside the transaction that records
// the request; the workflow asks ErasureRecorded before dispatching anything.
func TestErasureRecordedWaitsForTheCreation(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testContext(t)

	check := func(id string) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return s.ErasureRecorded(cctx, id)
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
			in := newErasure(t0)
			type answer struct {
				ok  bool
				err error
			}
			answers := make(chan answer, 1)
			_, _, err := s.CreateErasure(ctx, in, func(context.Context) error {
				// The workflow asks while the request is being created...
				go func() {
					ok, err := check(in.ID)
					answers <- answer{ok, err}
				}()
				// ...and must not get an answer before the creation ends.
				select {
				case a := <-answers:
					t.Errorf("ErasureRecorded answered %v, %v before the creating transaction ended", a.ok, a.err)
					answers <- a
				case <-time.After(300 * time.Millisecond):
				}
				return tc.start
			})
			if !errors.Is(err, tc.start) {
				t.Fatalf("CreateErasure: %v", err)
			}
			a := <-answers
			if a.err != nil || a.ok != tc.wantOK {
				t.Errorf("ErasureRecorded = %v, %v; want %v", a.ok, a.err, tc.wantOK)
			}
		})
	}
	if ok, err := check("not-a-uuid"); ok || err != nil {
		t.Errorf("ErasureRecorded(not a uuid) = %v, %v; want false", ok, err)
	}
}
