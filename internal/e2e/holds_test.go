package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/demo"
	"github.com/lethe-dev/lethe/workflows"
)

// waitFor polls a request until ok accepts it.
func (s *stack) waitFor(id string, within time.Duration, what string, ok func(lethe.Erasure) bool) lethe.Erasure {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var e lethe.Erasure
		s.do(http.MethodGet, "/v1/erasures/"+id, nil).Decode(s.t, &e)
		if ok(e) {
			return e
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("request %s never %s: %+v", id, what, e)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A legal hold on the demo subject keeps orders retained, with the basis,
// while the other systems erase; the deadline is extended meanwhile and the
// workflow sees it; lifting the hold through the API wakes the workflow,
// which erases orders and completes. Real PostgreSQL, Temporal and Kafka.
func TestHoldLiftAndExtensionThroughAPI(t *testing.T) {
	s := newStack(t, stackOptions{})
	subject := startDemo(t, s)
	hold := map[string]any{"subject": map[string]string{"email": subject.Email}, "system": demo.SystemOrders,
		"basis": "Art. 17(3)(e): litigation 2026-114"}
	if res := s.do(http.MethodPut, "/v1/holds/case-114", hold); res.Status != http.StatusCreated {
		t.Fatalf("PUT hold = %d %s", res.Status, res.Body)
	}
	e := s.submit(subjectMap(subject.Identifiers()))
	held := s.waitFor(e.ID, 60*time.Second, "held orders with the others erased", func(e lethe.Erasure) bool {
		done := 0
		for _, p := range e.Systems {
			if p.Status.Final() {
				done++
			}
		}
		return done == len(demo.Systems())
	})
	for _, p := range held.Systems {
		want := lethe.SystemErased
		if p.Name == demo.SystemOrders {
			want = lethe.SystemRetained
			if !strings.Contains(p.Detail, "litigation 2026-114") || !strings.Contains(p.Detail, "case-114") {
				t.Errorf("orders detail %q, want the hold and its basis", p.Detail)
			}
		}
		if p.Status != want {
			t.Errorf("%s is %s, want %s", p.Name, p.Status, want)
		}
	}
	if held.Status != lethe.RequestRunning {
		t.Errorf("request %s while held, want running", held.Status)
	}
	if n := remaining(t, s, demo.SystemOrders, subject.AllIdentifiers()); n == 0 {
		t.Fatal("orders erased the held subject's rows")
	}

	res := s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/extend", map[string]string{"by": "720h", "reason": "records in archives"})
	var extended lethe.Erasure
	res.Decode(t, &extended)
	if res.Status != http.StatusOK || !extended.Deadline.Equal(e.Deadline.Add(720*time.Hour)) {
		t.Fatalf("extend = %d %s", res.Status, res.Body)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	v, err := s.Temporal.QueryWorkflow(ctx, workflows.ErasureWorkflowID(e.ID), "", workflows.QueryStatus)
	if err != nil {
		t.Fatal(err)
	}
	var live lethe.Erasure
	if err := v.Get(&live); err != nil {
		t.Fatal(err)
	}
	if !live.Deadline.Equal(extended.Deadline) || !live.Target.Equal(extended.Target) {
		t.Errorf("the workflow's deadline %v target %v, want the extended %v %v", live.Deadline, live.Target,
			extended.Deadline, extended.Target)
	}

	if res := s.do(http.MethodDelete, "/v1/holds/case-114", nil); res.Status != http.StatusOK {
		t.Fatalf("DELETE hold = %d %s", res.Status, res.Body)
	}
	done := s.await(e.ID, 60*time.Second)
	if done.Status != lethe.RequestCompleted {
		t.Fatalf("status %s after the lift, want completed: %+v", done.Status, done.Systems)
	}
	if n := remaining(t, s, demo.SystemOrders, subject.AllIdentifiers()); n != 0 {
		t.Errorf("orders still holds %d rows after the lift", n)
	}
	events, err := s.Store.Audit(s.ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[lethe.AuditKind]int{}
	for _, ev := range events {
		kinds[ev.Kind]++
	}
	if kinds[lethe.AuditHeld] != 1 || kinds[lethe.AuditExtended] != 1 || kinds[lethe.AuditCompleted] != 1 {
		t.Errorf("audit kinds %v, want one held, one extended, one completed", kinds)
	}
}
