package faults_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/workflows"
)

// TestPostgresConnectionsDropped terminates Lethe's PostgreSQL connections
// (pg_terminate_backend) over and over while requests are submitted, read
// and run, and once at the worst moment of three submissions: after their
// workflow started and before their ledger row committed. Meanwhile every
// API call that fails must answer 503 with an error code, never 500.
// Afterwards every accepted request is complete and consistent, and the
// three whose creation was cut left nothing behind: no ledger row, and no
// command dispatched by a workflow the ledger never recorded. The audit's
// hash chain is intact.
func TestPostgresConnectionsDropped(t *testing.T) {
	cutter := &cuttingEngine{left: 3}
	s := newStack(t, stackOptions{Worker: true, Relay: true, Engine: func(e api.Engine) api.Engine {
		cutter.Engine = e
		return cutter
	}})
	cutter.cut = s.cutConnections
	ctx, cancel := s.deadline()
	defer cancel()
	a, b := newService("pg-a", false), newService("pg-b", false)
	s.putSystem(a)
	s.putSystem(b)

	var terminated, rounds atomic.Int64
	stop := make(chan struct{})
	var killer sync.WaitGroup
	killer.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			if n, err := s.cutConnections(ctx); err == nil {
				terminated.Add(int64(n))
			} else if ctx.Err() == nil {
				t.Errorf("terminate backends: %v", err)
			}
			rounds.Add(1)
		}
	})

	var unavailable atomic.Int64
	// answered reports whether an API call succeeded; one that failed must
	// have answered 503 with a code.
	answered := func(what string, r response, err error) bool {
		t.Helper()
		switch {
		case err != nil:
			t.Fatalf("%s: %v", what, err)
		case r.Status == http.StatusServiceUnavailable:
			unavailable.Add(1)
			if r.ErrorCode() == "" {
				t.Errorf("%s answered 503 without an error code: %s", what, r.Body)
			}
			return false
		case r.Status >= 400:
			t.Errorf("%s answered %d, want success or 503: %s", what, r.Status, r.Body)
			return false
		}
		return true
	}
	const n = 8
	var reqs []lethe.Erasure
	for i := range n {
		body := map[string]any{"subject": subject("pg", i), "reason": "gdpr_art17"}
		key := fmt.Sprintf("pg-%d", i)
		for {
			r, err := s.call(http.MethodPost, "/v1/erasures", body, "Idempotency-Key", key)
			if answered("POST /v1/erasures", r, err) {
				var e lethe.Erasure
				r.Decode(t, &e)
				reqs = append(reqs, e)
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("request %d was never accepted", i)
			}
		}
		for _, path := range []string{"/v1/erasures/" + reqs[i].ID, "/v1/erasures?limit=5", "/v1/systems"} {
			r, err := s.call(http.MethodGet, path, nil)
			answered("GET "+path, r, err)
		}
	}
	// Go on cutting while the workflows write the ledger.
	eventually(t, ctx, "200 rounds of terminations", func() bool { return rounds.Load() >= 200 })
	close(stop)
	killer.Wait()

	cut := cutter.cutRequests()
	if terminated.Load() == 0 || len(cut) != 3 {
		t.Fatalf("terminated %d backends, cut %d creations; the fault did not happen", terminated.Load(), len(cut))
	}
	if unavailable.Load() < int64(len(cut)) {
		t.Errorf("%d API calls answered 503, want at least the %d whose creation was cut", unavailable.Load(), len(cut))
	}
	t.Logf("terminated %d backends in %d rounds; %d API calls answered 503", terminated.Load(), rounds.Load(), unavailable.Load())

	s.awaitFinal(ctx, ids(reqs)...)
	s.verify(ctx, expectCompleted(reqs, a.name, b.name)...)
	for _, id := range cut {
		s.verifyNeverRecorded(ctx, id)
	}
	var total, broken int
	if err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM erasure_requests`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != n {
		t.Errorf("the ledger holds %d requests, want %d (one per idempotency key)", total, n)
	}
	// Nothing half-written anywhere: every request has its digests and its
	// received event, every system row and every request's audit event has
	// its request (registry changes are audited without one).
	if err := s.DB.QueryRowContext(ctx, `
		SELECT
			(SELECT count(*) FROM erasure_requests r
			 WHERE NOT EXISTS (SELECT 1 FROM request_subjects s WHERE s.request_id = r.id)
			    OR NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.request_id = r.id AND a.kind = 'received'))
			+ (SELECT count(*) FROM erasure_systems s
			   WHERE NOT EXISTS (SELECT 1 FROM erasure_requests r WHERE r.id = s.request_id))
			+ (SELECT count(*) FROM audit_events a
			   WHERE a.kind NOT IN ('confirmation_late', 'confirmation_rejected')
			     AND a.request_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM erasure_requests r WHERE r.id = a.request_id))`).Scan(&broken); err != nil {
		t.Fatal(err)
	}
	if broken != 0 {
		t.Errorf("%d half-written rows in the ledger", broken)
	}
	// Transactions cut halfway left no gap or fork in the audit's hash chain.
	v, err := s.Store.VerifyAudit(ctx)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if !v.Intact() {
		t.Errorf("audit chain broken after dropped connections: %+v", *v.Broken)
	}
}

// verifyNeverRecorded checks that a request whose creation failed left no
// trace: no ledger row, no command reached a system, and its workflow,
// started before the failure, closed without running.
func (s *stack) verifyNeverRecorded(ctx context.Context, id string) {
	t := s.t
	t.Helper()
	var rows int
	if err := s.DB.QueryRowContext(ctx, `SELECT count(*) FROM erasure_requests WHERE id = $1`, id).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("request %s, whose creation answered 503, is in the ledger", id)
	}
	for _, svc := range s.services {
		if svc.commandOf(id) != "" {
			t.Errorf("system %s received a command of request %s, which the ledger never recorded", svc.name, id)
		}
	}
	eventually(t, ctx, "the workflow of unrecorded request "+id+" closed", func() bool {
		d, err := s.Client.DescribeWorkflowExecution(ctx, workflows.ErasureWorkflowID(id), "")
		return err == nil && d.GetWorkflowExecutionInfo().GetCloseTime() != nil
	})
}

// cuttingEngine starts workflows as the real engine does and then, for its
// first few starts, terminates Lethe's PostgreSQL connections: the start
// has happened, the transaction that records the request has not committed.
type cuttingEngine struct {
	api.Engine
	cut func(ctx context.Context) (int, error)

	mu   sync.Mutex
	left int
	cuts []string
}

func (e *cuttingEngine) StartErasure(ctx context.Context, in workflows.ErasureInput) error {
	if err := e.Engine.StartErasure(ctx, in); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.left == 0 {
		return nil
	}
	if n, err := e.cut(context.WithoutCancel(ctx)); err != nil || n == 0 {
		return nil // counted as not cut; the test fails on too few cuts
	}
	e.left--
	e.cuts = append(e.cuts, in.RequestID)
	return nil
}

// cutRequests are the requests whose creation was cut after their start.
func (e *cuttingEngine) cutRequests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.cuts...)
}
