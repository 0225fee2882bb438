package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
)

const (
	testRequestID = "6f1c0000-0000-4000-8000-000000000001"
	otherRequest  = "6f1c0000-0000-4000-8000-000000000002"
	unknownCmdID  = "0b5c0000-0000-4000-8000-0000000000ff"
)

var testStart = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// world is a test's registry, Kafka and ledger: the mocked activities record
// every call here. The mocks run on goroutines of their own, hence the lock.
type world struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	systems []activities.Target

	mu    sync.Mutex
	logs  bytes.Buffer
	plans [][]string
	syncs []activities.SyncInput
	// syncedAt is the workflow time of each Sync.
	syncedAt []time.Time
	// planErr, when set, answers the n-th Plan (from 1) instead of the
	// registry when it returns an error.
	planErr func(n int) error
	upserts []temporal.SearchAttributes
	// upsertedAt is the workflow time of each upsert.
	upsertedAt []time.Time
	escs       []lethe.Escalation
	// escalateErr, when set, runs at the n-th Escalate call (from 1)
	// and answers it when it returns an error: a webhook that is slow or
	// down. escs keeps only the escalations delivered.
	escalateErr func(n int) error
	escalateN   int
	// holds maps a system to the hold the registry reports on it.
	holds map[string]*lethe.Hold
	// planned keeps every Plan input, for the holds tests.
	planned []activities.PlanInput
	// undeliver maps a system to how many more of its commands a Sync
	// that allows it (SyncInput.Partial) gives back undelivered, as when
	// its topic is missing and cannot be created.
	undeliver map[string]int
	// syncErr, when set, answers a Sync with the error it returns for
	// that Sync's input and its n-th attempt (from 1), before anything is
	// recorded: a database that refuses the write.
	syncErr   func(in activities.SyncInput, n int) error
	syncTries map[string]int
}

func target(name string, within time.Duration, types ...string) activities.Target {
	return activities.Target{System: name, Topic: wire.DefaultTopic(name), Types: types, ConfirmWithin: within}
}

func newWorld(t *testing.T, systems ...activities.Target) *world {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	w := &world{t: t, systems: systems}
	// Every log line, workflow and SDK alike, is kept so a test can check
	// that no identifier value was logged.
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(logSink{w}, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	w.env = suite.NewTestWorkflowEnvironment()
	w.env.SetTestTimeout(60 * time.Second)
	w.env.SetStartTime(testStart)
	Register(w.env, &activities.Activities{})
	var a *activities.Activities
	w.env.OnActivity(a.Plan, mock.Anything, mock.Anything).Return(w.plan)
	w.env.OnActivity(a.Sync, mock.Anything, mock.Anything).Return(w.sync)
	w.env.OnActivity(a.Escalate, mock.Anything, mock.Anything).Return(w.escalate)
	return w
}

func (w *world) escalate(_ context.Context, e lethe.Escalation) error {
	w.mu.Lock()
	w.escalateN++
	n, fail := w.escalateN, w.escalateErr
	w.mu.Unlock()
	if fail != nil {
		if err := fail(n); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.escs = append(w.escs, e)
	return nil
}

func (w *world) escalations() []lethe.Escalation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.escs)
}

// setHold makes the registry report h on system from now on; nil lifts it.
func (w *world) setHold(system string, h *lethe.Hold) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holds == nil {
		w.holds = map[string]*lethe.Hold{}
	}
	w.holds[system] = h
}

type logSink struct{ w *world }

func (s logSink) Write(p []byte) (int, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.logs.Write(p)
}

func (w *world) plan(_ context.Context, in activities.PlanInput) (activities.PlanResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.plans = append(w.plans, slices.Clone(in.Types))
	w.planned = append(w.planned, in)
	if w.planErr != nil {
		if err := w.planErr(len(w.planned)); err != nil {
			return activities.PlanResult{}, err
		}
	}
	var res activities.PlanResult
	for _, s := range w.systems {
		for _, typ := range s.Types {
			if slices.Contains(in.Types, typ) {
				if h := w.holds[s.System]; h != nil && (h.ExpiresAt == nil || h.ExpiresAt.After(in.At)) {
					hc := *h
					s.Hold = &hc
				}
				res.Targets = append(res.Targets, s)
				break
			}
		}
	}
	return res, nil
}

func (w *world) sync(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.syncErr != nil {
		if w.syncTries == nil {
			w.syncTries = map[string]int{}
		}
		w.syncTries[in.Ledger.Batch]++
		if err := w.syncErr(in, w.syncTries[in.Ledger.Batch]); err != nil {
			return activities.SyncResult{}, err
		}
	}
	var res activities.SyncResult
	if in.Partial {
		var sent []activities.Outbound
		for _, o := range in.Commands {
			if w.undeliver[o.Command.System] > 0 {
				w.undeliver[o.Command.System]--
				res.Undelivered = append(res.Undelivered, activities.Undelivered{CommandID: o.Command.CommandID,
					System: o.Command.System, Reason: "topics " + o.Topic + ": not authorized"})
				continue
			}
			sent = append(sent, o)
		}
		if len(res.Undelivered) > 0 {
			// What Sync published; the ledger is not written.
			in.Commands, in.Ledger = sent, lethe.LedgerDelta{}
		}
	}
	w.syncs = append(w.syncs, in)
	w.syncedAt = append(w.syncedAt, w.env.Now())
	res.Published = len(in.Commands)
	return res, nil
}

// recordSearchAttributes turns on the upsert mock; with it on, every upsert
// must match it, so only the tests that look at upserts call it.
func (w *world) recordSearchAttributes() {
	w.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.upserts = append(w.upserts, args.Get(0).(temporal.SearchAttributes))
		w.upsertedAt = append(w.upsertedAt, w.env.Now())
	}).Return(nil)
}

func (w *world) run(in ErasureInput) error {
	w.t.Helper()
	w.env.ExecuteWorkflow(ErasureWorkflow, in)
	if !w.env.IsWorkflowCompleted() {
		w.t.Fatal("workflow did not complete")
	}
	return w.env.GetWorkflowError()
}

func (w *world) syncCalls() []activities.SyncInput {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.syncs)
}

func (w *world) planCalls() [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.plans)
}

// published lists every command put on Kafka, in order.
func (w *world) published() []activities.Outbound {
	var out []activities.Outbound
	for _, s := range w.syncCalls() {
		out = append(out, s.Commands...)
	}
	return out
}

// commandsTo lists the commands published to a system, in order.
func (w *world) commandsTo(system string) []wire.Command {
	var out []wire.Command
	for _, o := range w.published() {
		if o.Command.System == system {
			out = append(out, o.Command)
		}
	}
	return out
}

// latest is the last command published to a system.
func (w *world) latest(system string) wire.Command {
	w.t.Helper()
	cmds := w.commandsTo(system)
	if len(cmds) == 0 {
		w.t.Fatalf("no command was published to %s", system)
	}
	return cmds[len(cmds)-1]
}

func (w *world) events() []lethe.AuditEvent {
	var out []lethe.AuditEvent
	for _, s := range w.syncCalls() {
		out = append(out, s.Ledger.Events...)
	}
	return out
}

func (w *world) eventsOf(kind lethe.AuditKind) []lethe.AuditEvent {
	var out []lethe.AuditEvent
	for _, e := range w.events() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// finalStatus is the last request status written to the ledger.
func (w *world) finalStatus() (lethe.RequestStatus, *time.Time) {
	var status lethe.RequestStatus
	var at *time.Time
	for _, s := range w.syncCalls() {
		if s.Ledger.Status != "" {
			status, at = s.Ledger.Status, s.Ledger.CompletedAt
		}
	}
	return status, at
}

// ledgerSystems is each system's last progress written to the ledger.
func (w *world) ledgerSystems() map[string]lethe.SystemProgress {
	out := map[string]lethe.SystemProgress{}
	for _, s := range w.syncCalls() {
		for _, p := range s.Ledger.Systems {
			out[p.Name] = p
		}
	}
	return out
}

func (w *world) query() lethe.Erasure {
	w.t.Helper()
	v, err := w.env.QueryWorkflow(QueryStatus)
	if err != nil {
		w.t.Fatalf("query %s: %v", QueryStatus, err)
	}
	var e lethe.Erasure
	if err := v.Get(&e); err != nil {
		w.t.Fatalf("decode query result: %v", err)
	}
	return e
}

// at runs fn once the workflow's clock has moved d past the start.
func (w *world) at(d time.Duration, fn func()) { w.env.RegisterDelayedCallback(fn, d) }

// confirmAt signals, at d, the confirmations build returns then; build runs
// late so it can name the command_ids the workflow drew.
func (w *world) confirmAt(d time.Duration, build func() []wire.Confirmation) {
	w.at(d, func() { w.env.SignalWorkflow(SignalConfirm, ConfirmSignal{Confirmations: build()}) })
}

// answer builds a confirmation of the latest command sent to system.
func (w *world) answer(system string, outcome wire.Outcome, records int64) wire.Confirmation {
	cmd := w.latest(system)
	c := wire.Confirmation{
		Schema:      wire.SchemaConfirmation,
		CommandID:   cmd.CommandID,
		RequestID:   cmd.RequestID,
		System:      system,
		Outcome:     outcome,
		Records:     records,
		ConfirmedAt: w.env.Now().UTC(),
	}
	if outcome == wire.OutcomeRetained {
		c.Detail = "tax records kept 10 years (HGB 257)"
	}
	return c
}

func one(c wire.Confirmation) func() []wire.Confirmation {
	return func() []wire.Confirmation { return []wire.Confirmation{c} }
}

func input(subject ...wire.Identifier) ErasureInput {
	return ErasureInput{
		RequestID: testRequestID,
		Subject:   subject,
		CreatedAt: testStart,
		Deadline:  testStart.Add(lethe.DefaultDeadline),
	}
}

func id(typ, value string) wire.Identifier { return wire.Identifier{Type: typ, Value: value} }

// assertNoValues fails if any ledger write, log line or the query answer
// contains one of the subject's identifier values.
func assertNoValues(t *testing.T, w *world, values ...string) {
	t.Helper()
	w.mu.Lock()
	logs := w.logs.String()
	w.mu.Unlock()
	if logs == "" {
		t.Error("nothing was logged; the log check is not looking at the workflow's logger")
	}
	for _, v := range values {
		if strings.Contains(logs, v) {
			t.Errorf("the logs contain an identifier value")
		}
	}
	for i, s := range w.syncCalls() {
		b, err := json.Marshal(s.Ledger)
		if err != nil {
			t.Fatalf("encode ledger: %v", err)
		}
		for _, v := range values {
			if strings.Contains(string(b), v) {
				t.Errorf("ledger write %d contains an identifier value: %s", i, b)
			}
		}
	}
	b, err := json.Marshal(w.query())
	if err != nil {
		t.Fatalf("encode query: %v", err)
	}
	for _, v := range values {
		if strings.Contains(string(b), v) {
			t.Errorf("query answer contains an identifier value: %s", b)
		}
	}
}

func progressByName(e lethe.Erasure) map[string]lethe.SystemProgress {
	out := map[string]lethe.SystemProgress{}
	for _, p := range e.Systems {
		out[p.Name] = p
	}
	return out
}
