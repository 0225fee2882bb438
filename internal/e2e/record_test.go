package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/temporaltest"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/api"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testtemporal"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// recordEnv, set to 1, makes TestRecordHistories write the histories that
// workflows/replay_test.go replays:
//
//	LETHE_RECORD_HISTORIES=1 go test -count=1 -run '^TestRecordHistories$' ./internal/e2e/
const recordEnv = "LETHE_RECORD_HISTORIES"

// historiesDir is where the recorded histories live, from this package.
const historiesDir = "../../workflows/testdata/histories"

// recordPolicy is the policy of every recorded request: the defaults, but
// with a retry delay and a settling time of seconds, so that each path runs
// through its timers within seconds and the longer ones pass the settling
// time (revisions 1 and 3 behave differently before and after it).
var recordPolicy = workflows.Policy{MaxAttempts: 3, RetryDelay: time.Second, Settle: 2 * time.Second}

// recordSubject is the subject of every recorded request: values that are
// plainly not anyone's, since the histories are committed in plaintext.
var recordSubject = map[string]string{"email": "subject-1@example.test"}

// recordPath drives one path of a request to its end on stack s and
// returns the request's id.
type recordPath struct {
	name string
	// canAfter, when set, has the Temporal server suggest continue-as-new
	// once a run's history holds this many events.
	canAfter int
	// engine, when set, wraps the engine the API starts workflows
	// through, for a path the API alone cannot take.
	engine func(api.Engine) api.Engine
	// since is the first revision that has the path.
	since int
	// secure runs the path on a broker that enforces ACLs.
	secure bool
	drive  func(t *testing.T, s *stack) string
}

var recordPaths = []recordPath{
	{name: "plain", drive: recordPlain},
	{name: "derived", drive: recordDerived},
	{name: "hold-lift", drive: recordHoldLift},
	{name: "extend", drive: recordExtend},
	{name: "redispatch", drive: recordRedispatch},
	{name: "overdue", drive: recordOverdue},
	{name: "cancel", drive: recordCancel},
	{name: "failure", drive: recordFailure},
	{name: "continue-as-new", canAfter: 30, drive: recordContinueAsNew},
	{name: "stopped", engine: func(e api.Engine) api.Engine { return oversizedEngine{Engine: e} }, drive: recordStopped},
	{name: "outage", since: workflows.RevisionRegularRetries, drive: recordOutage},
	{name: "not-dispatched", since: workflows.RevisionRegularRetries, secure: true, drive: recordNotDispatched},
	{name: "retry-running", since: workflows.RevisionRetry, drive: recordRetryRunning},
	{name: "retry-closed", since: workflows.RevisionRetry, drive: recordRetryClosed},
	{name: "ordered", since: workflows.RevisionOrdered, drive: recordOrdered},
}

// TestRecordHistories records real histories of ErasureWorkflow, one per
// revision and path, for the replay test in package workflows: the whole
// stack (API, worker, relay, connectors) on a Temporal test server,
// PostgreSQL and kfake, with the API starting each request at the revision
// being recorded. It is a tool, not a test: it runs only with
// LETHE_RECORD_HISTORIES=1, and it never overwrites a history, since a
// recorded one guards the workflows started with it. It records the
// missing ones; delete a file to record it again.
func TestRecordHistories(t *testing.T) {
	if os.Getenv(recordEnv) != "1" {
		t.Skipf("records histories only with %s=1 (a tool, not a test; workflows.TestReplayHistories replays them)", recordEnv)
	}
	if err := os.MkdirAll(historiesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for rev := 0; rev <= workflows.CurrentRevision; rev++ {
		for _, p := range recordPaths {
			if rev < p.since {
				continue
			}
			name := strconv.Itoa(rev) + "-" + p.name
			t.Run(name, func(t *testing.T) {
				if recorded(t, name) {
					t.Skipf("%s is recorded; delete its files to record it again", name)
				}
				t.Parallel()
				recordOne(t, rev, p, name)
			})
		}
	}
}

// recorded reports whether the histories of name exist already.
func recorded(t *testing.T, name string) bool {
	t.Helper()
	for _, pattern := range []string{name + ".json", name + ".run*.json"} {
		m, err := filepath.Glob(filepath.Join(historiesDir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			return true
		}
	}
	return false
}

// recordOne runs one path at revision rev on a stack of its own and writes
// the histories of the request's runs.
func recordOne(t *testing.T, rev int, p recordPath, name string) {
	opts := stackOptions{Policy: recordPolicy, Plaintext: !p.secure, Secure: p.secure,
		Engine: func(e api.Engine) api.Engine {
			if p.engine != nil {
				e = p.engine(e)
			}
			return revisionEngine{Engine: e, revision: rev}
		}}
	if p.canAfter > 0 {
		dc := dynamicconfig.StaticClient{
			// temporaltest sets it; a dynamic config of our own replaces its.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): []dynamicconfig.ConstrainedValue{{Value: true}},
			dynamicconfig.HistoryCountSuggestContinueAsNew.Key():        []dynamicconfig.ConstrainedValue{{Value: p.canAfter}},
		}
		opts.Temporal, opts.Namespace = testtemporal.Start(t,
			temporaltest.WithBaseServerOptions(temporal.WithDynamicConfigClient(dc)))
	}
	s := newStack(t, opts)
	id := p.drive(t, s)
	runs := s.histories(workflows.ErasureWorkflowID(id))
	if p.canAfter > 0 && len(runs) < 2 {
		t.Fatalf("%s ended in %d run, want it to continue as new", name, len(runs))
	}
	for i, h := range runs {
		file := name + ".json"
		if len(runs) > 1 {
			file = fmt.Sprintf("%s.run%d.json", name, i+1)
		}
		writeHistory(t, filepath.Join(historiesDir, file), h)
	}
}

// revisionEngine starts every workflow at revision, as an API of the
// release that introduced it did.
type revisionEngine struct {
	api.Engine
	revision int
}

func (e revisionEngine) StartErasure(ctx context.Context, in workflows.ErasureInput) error {
	in.Revision = e.revision
	return e.Engine.StartErasure(ctx, in)
}

// histories waits until the workflow closes and returns the history of
// each of its runs, first to last.
func (s *stack) histories(workflowID string) []*historypb.History {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	// Get follows continue-as-new to the last run; how it ended is the path's.
	_ = s.Temporal.GetWorkflow(ctx, workflowID, "").Get(ctx, nil)
	d, err := s.Temporal.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("workflow %s still running", workflowID)
	}
	var out []*historypb.History
	for run := d.GetWorkflowExecutionInfo().GetFirstRunId(); run != ""; {
		h := &historypb.History{}
		it := s.Temporal.GetWorkflowHistory(ctx, workflowID, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatalf("history of %s run %s: %v", workflowID, run, err)
			}
			h.Events = append(h.Events, ev)
		}
		out = append(out, h)
		run = ""
		if last := h.Events[len(h.Events)-1]; last.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW {
			run = last.GetWorkflowExecutionContinuedAsNewEventAttributes().GetNewExecutionRunId()
		}
		if len(out) > 10 {
			t.Fatalf("workflow %s continued as new more than 10 times", workflowID)
		}
	}
	return out
}

// writeHistory writes h as the JSON that the Temporal CLI and UI export and
// worker.WorkflowReplayer reads. Identities (the pid and host name of
// whoever started, signaled or ran the workflow) are replaced: they say
// nothing to a replay, and the machine that recorded is nobody's business.
func writeHistory(t *testing.T, path string, h *historypb.History) {
	t.Helper()
	for _, ev := range h.Events {
		scrubIdentity(ev.ProtoReflect())
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s: %d events", path, len(h.Events))
}

func scrubIdentity(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "identity" && fd.Kind() == protoreflect.StringKind && !fd.IsList():
			m.Set(fd, protoreflect.ValueOfString("lethe-recorder"))
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			scrubIdentity(v.Message())
		}
		return true
	})
}

// erase is a connector that erases one record and reveals derived.
func erase(derived ...wire.Identifier) connectors.Handler {
	return connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1, Derived: derived}, nil
	})
}

// gated is a connector that erases once its gate is open.
func gated(gate <-chan struct{}) connectors.Handler {
	return connectors.HandlerFunc(func(ctx context.Context, _ connectors.Request) (connectors.Result, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return connectors.Result{}, ctx.Err()
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
}

func (s *stack) recordSystem(name string, types []string, produces ...string) {
	s.t.Helper()
	s.putSystem(lethe.System{Name: name, Identifiers: types, Produces: produces, Owner: "recorder",
		Description: "a system of the recorded histories"})
}

// live polls the request's workflow through its status query until ok
// accepts what it answers.
func (s *stack) live(id, what string, ok func(lethe.Erasure) bool) lethe.Erasure {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		e, err := s.queryStatus(id)
		if err == nil && ok(e) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s never %s: %+v (%v)", id, what, e, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *stack) queryStatus(id string) (lethe.Erasure, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	v, err := s.Temporal.QueryWorkflow(ctx, workflows.ErasureWorkflowID(id), "", workflows.QueryStatus)
	if err != nil {
		return lethe.Erasure{}, err
	}
	var e lethe.Erasure
	err = v.Get(&e)
	return e, err
}

func systemIs(name string, status lethe.SystemStatus) func(lethe.Erasure) bool {
	return func(e lethe.Erasure) bool {
		for _, p := range e.Systems {
			if p.Name == name {
				return p.Status == status
			}
		}
		return false
	}
}

// expect fails the recording unless the request ended as want: a history
// of another path than its name says would guard the wrong thing.
func expect(t *testing.T, e lethe.Erasure, want lethe.RequestStatus) {
	t.Helper()
	if e.Status != want {
		t.Fatalf("request %s ended %s, want %s: %s", e.ID, e.Status, want, describe(e))
	}
}

// recordPlain: two systems erase.
func recordPlain(t *testing.T, s *stack) string {
	for _, name := range []string{"rec-alpha", "rec-beta"} {
		s.recordSystem(name, []string{"email"})
		s.runConnector(name, erase())
	}
	e := s.submit(recordSubject)
	expect(t, s.await(e.ID, time.Minute), lethe.RequestCompleted)
	return e.ID
}

// recordDerived: accounts reveals a user_id, which reaches billing.
func recordDerived(t *testing.T, s *stack) string {
	s.recordSystem("rec-accounts", []string{"email"}, "user_id")
	s.recordSystem("rec-billing", []string{"user_id"})
	s.runConnector("rec-accounts", erase(wire.Identifier{Type: "user_id", Value: "subject-1-user"}))
	s.runConnector("rec-billing", erase())
	e := s.submit(recordSubject)
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	if p := systemByName(t, done, "rec-billing"); p.Status != lethe.SystemErased {
		t.Fatalf("billing %s, want erased through the derived identifier", p.Status)
	}
	return e.ID
}

// recordHoldLift: a legal hold keeps orders while mail erases; the hold is
// lifted through the API and orders erases.
func recordHoldLift(t *testing.T, s *stack) string {
	for _, name := range []string{"rec-orders", "rec-mail"} {
		s.recordSystem(name, []string{"email"})
		s.runConnector(name, erase())
	}
	hold := map[string]any{"subject": recordSubject, "system": "rec-orders", "basis": "Art. 17(3)(e): case 1"}
	if r := s.do(http.MethodPut, "/v1/holds/case-1", hold); r.Status != http.StatusCreated {
		t.Fatalf("PUT hold = %d %s", r.Status, r.Body)
	}
	e := s.submit(recordSubject)
	s.live(e.ID, "held orders with mail erased", func(e lethe.Erasure) bool {
		return systemIs("rec-orders", lethe.SystemRetained)(e) && systemIs("rec-mail", lethe.SystemErased)(e)
	})
	if r := s.do(http.MethodDelete, "/v1/holds/case-1", nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE hold = %d %s", r.Status, r.Body)
	}
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	if p := systemByName(t, done, "rec-orders"); p.Status != lethe.SystemErased {
		t.Fatalf("orders %s after the lift, want erased", p.Status)
	}
	return e.ID
}

// recordExtend: the deadline is extended while a system works; it then erases.
func recordExtend(t *testing.T, s *stack) string {
	gate := make(chan struct{})
	s.recordSystem("rec-archive", []string{"email"})
	s.runConnector("rec-archive", gated(gate))
	e := s.submit(recordSubject)
	s.live(e.ID, "dispatched", systemIs("rec-archive", lethe.SystemDispatched))
	r := s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/extend", map[string]string{"by": "720h", "reason": "records in archives"})
	var extended lethe.Erasure
	r.Decode(t, &extended)
	if r.Status != http.StatusOK {
		t.Fatalf("extend = %d %s", r.Status, r.Body)
	}
	s.live(e.ID, "extended", func(e lethe.Erasure) bool { return e.Deadline.Equal(extended.Deadline) })
	close(gate)
	expect(t, s.await(e.ID, time.Minute), lethe.RequestCompleted)
	return e.ID
}

// recordRedispatch: a system silent past its confirm_within gets its
// command again, and erases on the second attempt. Its confirm_within is
// set in the registry below what the API allows (a minute), so that the
// recording takes seconds.
func recordRedispatch(t *testing.T, s *stack) string {
	s.recordSystem("rec-late", []string{"email"})
	if _, _, err := s.Store.PutSystem(s.ctx, lethe.System{Name: "rec-late", Identifiers: []string{"email"},
		Owner: "recorder", ConfirmWithin: lethe.Duration(2 * time.Second)}, registry.SystemWrite{Actor: "recorder"}); err != nil {
		t.Fatal(err)
	}
	e := s.submit(recordSubject)
	s.live(e.ID, "dispatched again", func(e lethe.Erasure) bool {
		return len(e.Systems) == 1 && e.Systems[0].Attempts >= 2
	})
	s.runConnector("rec-late", erase())
	expect(t, s.await(e.ID, time.Minute), lethe.RequestCompleted)
	return e.ID
}

// recordOverdue: a request with a deadline seconds away passes its
// reminders (re-dispatching) and its deadline (overdue, escalated) before
// its one system erases.
func recordOverdue(t *testing.T, s *stack) string {
	s.recordSystem("rec-slow", []string{"email"})
	deadline := time.Now().Add(3 * time.Second).UTC()
	r := s.do(http.MethodPost, "/v1/erasures", map[string]any{"subject": recordSubject, "reason": "gdpr_art17",
		"requested_by": "recorder", "deadline": deadline})
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/erasures = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(t, &e)
	s.live(e.ID, "overdue", func(e lethe.Erasure) bool { return e.Overdue })
	s.runConnector("rec-slow", erase())
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	return e.ID
}

// recordCancel: a request whose system never answers is canceled through
// the API.
func recordCancel(t *testing.T, s *stack) string {
	s.recordSystem("rec-silent", []string{"email"})
	e := s.submit(recordSubject)
	s.live(e.ID, "dispatched", systemIs("rec-silent", lethe.SystemDispatched))
	if r := s.do(http.MethodPost, "/v1/erasures/"+e.ID+"/cancel", nil); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	expect(t, s.await(e.ID, time.Minute), lethe.RequestCanceled)
	return e.ID
}

// recordFailure: one system fails for good at once, another keeps asking
// for a retry until its attempts are spent; the request fails.
func recordFailure(t *testing.T, s *stack) string {
	s.recordSystem("rec-broken", []string{"email"})
	s.recordSystem("rec-flaky", []string{"email"})
	s.runConnector("rec-broken", connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "store is read-only"}, nil
	}))
	s.runConnector("rec-flaky", connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: "lock timeout"}, nil
	}))
	e := s.submit(recordSubject)
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestFailed)
	if p := systemByName(t, done, "rec-flaky"); p.Attempts != recordPolicy.MaxAttempts {
		t.Fatalf("flaky failed after %d attempts, want %d", p.Attempts, recordPolicy.MaxAttempts)
	}
	return e.ID
}

// mending is a connector that fails, for good, until mend is called, and
// erases after.
type mending struct{ mended atomic.Bool }

func (m *mending) mend() { m.mended.Store(true) }

func (m *mending) Erase(context.Context, connectors.Request) (connectors.Result, error) {
	if !m.mended.Load() {
		return connectors.Result{Outcome: wire.OutcomeFailed, Detail: "store is read-only"}, nil
	}
	return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
}

// retry asks the API to retry the request's failed systems.
func (s *stack) retry(t *testing.T, id string) lethe.Erasure {
	t.Helper()
	r := s.do(http.MethodPost, "/v1/erasures/"+id+"/retry", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST retry = %d %s", r.Status, r.Body)
	}
	var e lethe.Erasure
	r.Decode(t, &e)
	return e
}

// recordRetryRunning: one system fails while another works; an operator
// retries it, and it erases on its second attempt.
func recordRetryRunning(t *testing.T, s *stack) string {
	gate := make(chan struct{})
	broken := &mending{}
	s.recordSystem("rec-mending", []string{"email"})
	s.recordSystem("rec-slow", []string{"email"})
	s.runConnector("rec-mending", broken)
	s.runConnector("rec-slow", gated(gate))
	e := s.submit(recordSubject)
	s.inLedger(e.ID, "failed on mending", systemIs("rec-mending", lethe.SystemFailed))
	broken.mend()
	s.retry(t, e.ID)
	s.live(e.ID, "erased on mending", systemIs("rec-mending", lethe.SystemErased))
	close(gate)
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	if p := systemByName(t, done, "rec-mending"); p.Attempts != 2 {
		t.Fatalf("mending erased at attempt %d, want 2", p.Attempts)
	}
	return e.ID
}

// recordRetryClosed: a request ends failed; an operator retries it, which
// starts its workflow again from where it ended, and it completes. The
// recorded history is the new run's.
func recordRetryClosed(t *testing.T, s *stack) string {
	broken := &mending{}
	s.recordSystem("rec-mending", []string{"email"})
	s.recordSystem("rec-fine", []string{"email"})
	s.runConnector("rec-mending", broken)
	s.runConnector("rec-fine", erase())
	e := s.submit(recordSubject)
	expect(t, s.await(e.ID, time.Minute), lethe.RequestFailed)
	s.closed(e.ID)
	broken.mend()
	if again := s.retry(t, e.ID); again.Status != lethe.RequestRunning {
		t.Fatalf("retried request is %s, want running", again.Status)
	}
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	if p := systemByName(t, done, "rec-fine"); p.Attempts != 1 {
		t.Fatalf("fine, erased before the retry, has %d attempts, want 1", p.Attempts)
	}
	return e.ID
}

// recordOrdered: a chain rec-first ← rec-second ← rec-third (each erased
// after the one before); rec-first fails, holding the others, until an
// operator retries it while the request still runs (rec-side keeps it
// open), and the chain completes in order.
func recordOrdered(t *testing.T, s *stack) string {
	gate := make(chan struct{})
	broken := &mending{}
	s.recordSystem("rec-first", []string{"email"})
	s.putSystem(lethe.System{Name: "rec-second", Identifiers: []string{"email"}, After: []string{"rec-first"}})
	s.putSystem(lethe.System{Name: "rec-third", Identifiers: []string{"email"}, After: []string{"rec-second"}})
	s.recordSystem("rec-side", []string{"email"})
	s.runConnector("rec-first", broken)
	s.runConnector("rec-second", erase())
	s.runConnector("rec-third", erase())
	s.runConnector("rec-side", gated(gate))
	e := s.submit(recordSubject)
	s.inLedger(e.ID, "failed on rec-first", systemIs("rec-first", lethe.SystemFailed))
	broken.mend()
	s.retry(t, e.ID)
	s.live(e.ID, "erased on rec-third", systemIs("rec-third", lethe.SystemErased))
	close(gate)
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	return e.ID
}

// inLedger polls the ledger's view of the request until ok accepts it: a
// retry reopens what the ledger shows failed, which a young request writes
// there only once it has settled.
func (s *stack) inLedger(id, what string, ok func(lethe.Erasure) bool) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		e, err := s.Store.GetErasure(s.ctx, id)
		if err == nil && ok(e) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the ledger never showed request %s %s: %+v (%v)", id, what, e, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// closed waits until the request's workflow has closed.
func (s *stack) closed(id string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	_ = s.Temporal.GetWorkflow(ctx, workflows.ErasureWorkflowID(id), "").Get(ctx, nil)
	if ctx.Err() != nil {
		s.t.Fatalf("workflow of %s did not close", id)
	}
}

// recordStopped: the worker cannot publish the command (an identifier
// longer than the contract allows; see oversizedEngine), a non-retryable
// error that stops the workflow. From RevisionNothingDropped on, the
// ledger then says failed; before, it went on saying running.
func recordStopped(t *testing.T, s *stack) string {
	s.recordSystem("rec-stuck", []string{"email"})
	e := s.submit(recordSubject)
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	err := s.Temporal.GetWorkflow(ctx, workflows.ErasureWorkflowID(e.ID), "").Get(ctx, nil)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("request %s: workflow ended with %v, want it to fail", e.ID, err)
	}
	return e.ID
}

// recordOutage: PostgreSQL refuses the worker's ledger writes (the table
// of system rows is renamed away) when the request has settled, until the
// Sync has gone from its fast local attempts to a regular activity
// (RevisionRegularRetries); then the table is back, the system confirms
// and the request completes.
func recordOutage(t *testing.T, s *stack) string {
	gate := make(chan struct{})
	s.recordSystem("rec-alpha", []string{"email"})
	s.runConnector("rec-alpha", gated(gate))
	e := s.submit(recordSubject)
	if _, err := s.DB.ExecContext(s.ctx, `ALTER TABLE erasure_systems RENAME TO erasure_systems_away`); err != nil {
		t.Fatal(err)
	}
	wid := workflows.ErasureWorkflowID(e.ID)
	deadline := time.Now().Add(time.Minute)
	for {
		d, err := s.Temporal.DescribeWorkflowExecution(s.ctx, wid, "")
		if err == nil && len(d.GetPendingActivities()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ledger write never went to a regular activity (last error: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.DB.ExecContext(s.ctx, `ALTER TABLE erasure_systems_away RENAME TO erasure_systems`); err != nil {
		t.Fatal(err)
	}
	close(gate)
	expect(t, s.await(e.ID, time.Minute), lethe.RequestCompleted)
	return e.ID
}

// recordNotDispatched: billing's topic is deleted and the broker's ACLs
// forbid Lethe to create it; billing waits pending while orders erases,
// until the operator creates the topic (see TestCommandTopicDeniedByACL).
func recordNotDispatched(t *testing.T, s *stack) string {
	return deniedTopic(t, s).ID
}

// recordContinueAsNew: systems confirm one at a time, each in its own
// workflow task, until the server suggests continue-as-new (see canAfter);
// the next run takes the request to its end.
func recordContinueAsNew(t *testing.T, s *stack) string {
	const n = 6
	gates := make([]chan struct{}, n)
	for i := range gates {
		name := fmt.Sprintf("rec-shard-%d", i+1)
		gates[i] = make(chan struct{})
		s.recordSystem(name, []string{"email"})
		s.runConnector(name, gated(gates[i]))
	}
	e := s.submit(recordSubject)
	for i, gate := range gates {
		close(gate)
		s.live(e.ID, "confirmed one more", func(e lethe.Erasure) bool {
			done := 0
			for _, p := range e.Systems {
				if p.Status.Final() {
					done++
				}
			}
			return done > i || e.Status.Final()
		})
	}
	expect(t, s.await(e.ID, time.Minute), lethe.RequestCompleted)
	return e.ID
}
