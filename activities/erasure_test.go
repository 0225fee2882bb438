package activities

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/digest"
	"github.com/lethe-dev/lethe/registry"
	"github.com/lethe-dev/lethe/wire"
)

const (
	testRequestID = "6f1c0000-0000-4000-8000-000000000001"
	testCommandA  = "0b5c0000-0000-4000-8000-00000000000a"
	testCommandB  = "0b5c0000-0000-4000-8000-00000000000b"
	secretValue   = "ada@example.com"
)

// journal records the order in which the fakes were called, so a test can
// assert that Kafka is written before the ledger.
type journal struct {
	mu    sync.Mutex
	steps []string
}

func (j *journal) add(step string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.steps = append(j.steps, step)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.steps)
}

type fakePublisher struct {
	j     *journal
	err   error
	mu    sync.Mutex
	calls [][]kafka.Message
}

func (p *fakePublisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.j.add("publish")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, msgs)
	return p.err
}

type fakeLedger struct {
	j      *journal
	err    error
	mu     sync.Mutex
	deltas []lethe.LedgerDelta
}

func (l *fakeLedger) ApplyLedger(_ context.Context, requestID string, d lethe.LedgerDelta) error {
	l.j.add("ledger:" + requestID)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deltas = append(l.deltas, d)
	return l.err
}

type fakeRegistry struct {
	systems []lethe.System
	holds   map[string]*lethe.Hold
	err     error
	asked   [][]string
	queries []registry.MatchQuery
}

func (r *fakeRegistry) MatchTargets(_ context.Context, q registry.MatchQuery) ([]registry.Match, error) {
	r.asked = append(r.asked, q.Types)
	r.queries = append(r.queries, q)
	out := make([]registry.Match, len(r.systems))
	for i, s := range r.systems {
		out[i] = registry.Match{System: s, Hold: r.holds[s.Name]}
	}
	return out, r.err
}

func newEnv() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	return s.NewTestActivityEnvironment()
}

func command(id, system string) wire.Command {
	issued := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return wire.Command{
		Schema:      wire.SchemaCommand,
		CommandID:   id,
		RequestID:   testRequestID,
		System:      system,
		Attempt:     1,
		Identifiers: []wire.Identifier{{Type: "email", Value: secretValue}},
		IssuedAt:    issued,
		ConfirmBy:   issued.Add(72 * time.Hour),
	}
}

func TestPlanFillsDefaultsAndOrdersByName(t *testing.T) {
	reg := &fakeRegistry{systems: []lethe.System{
		{Name: "orders", Identifiers: []string{"user_id", "email"}, Produces: []string{"stripe_customer_id"},
			Topic: "custom.orders", ConfirmWithin: lethe.Duration(time.Hour)},
		{Name: "billing", Identifiers: []string{"email"}},
	}}
	env := newEnv()
	a := &Activities{Registry: reg}
	env.RegisterActivity(a)

	v, err := env.ExecuteActivity(a.Plan, PlanInput{RequestID: testRequestID, Types: []string{"email", "user_id"}})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var got PlanResult
	if err := v.Get(&got); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	want := []Target{
		{System: "billing", Topic: "lethe.erasure.billing", Types: []string{"email"}, ConfirmWithin: lethe.DefaultConfirmWithin},
		{System: "orders", Topic: "custom.orders", Types: []string{"user_id", "email"},
			Produces: []string{"stripe_customer_id"}, ConfirmWithin: time.Hour},
	}
	if len(got.Targets) != len(want) {
		t.Fatalf("got %d targets, want %d: %+v", len(got.Targets), len(want), got.Targets)
	}
	for i := range want {
		g, w := got.Targets[i], want[i]
		if g.System != w.System || g.Topic != w.Topic || g.ConfirmWithin != w.ConfirmWithin ||
			!slices.Equal(g.Types, w.Types) || !slices.Equal(g.Produces, w.Produces) {
			t.Errorf("target %d: got %+v, want %+v", i, g, w)
		}
	}
	if len(reg.asked) != 1 || !slices.Equal(reg.asked[0], []string{"email", "user_id"}) {
		t.Errorf("registry asked %v, want one call with [email user_id]", reg.asked)
	}
}

func TestPlanEmptyMatch(t *testing.T) {
	env := newEnv()
	a := &Activities{Registry: &fakeRegistry{}}
	env.RegisterActivity(a)
	v, err := env.ExecuteActivity(a.Plan, PlanInput{RequestID: testRequestID, Types: []string{"phone"}})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var got PlanResult
	if err := v.Get(&got); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	if len(got.Targets) != 0 {
		t.Errorf("got %d targets, want none", len(got.Targets))
	}
}

func TestSyncPublishesAllInOneCallThenWritesLedger(t *testing.T) {
	j := &journal{}
	pub := &fakePublisher{j: j}
	led := &fakeLedger{j: j}
	env := newEnv()
	a := &Activities{Publisher: pub, Ledger: led}
	env.RegisterActivity(a)

	in := SyncInput{
		RequestID: testRequestID,
		Commands: []Outbound{
			{Topic: "lethe.erasure.billing", Command: command(testCommandA, "billing")},
			{Topic: "lethe.erasure.orders", Command: command(testCommandB, "orders")},
		},
		Ledger: lethe.LedgerDelta{Status: lethe.RequestRunning},
	}
	v, err := env.ExecuteActivity(a.Sync, in)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	var res SyncResult
	if err := v.Get(&res); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	if res.Published != 2 {
		t.Errorf("published %d, want 2", res.Published)
	}
	if got, want := j.list(), []string{"publish", "ledger:" + testRequestID}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	if len(pub.calls) != 1 || len(pub.calls[0]) != 2 {
		t.Fatalf("got %d publish calls, want one call with 2 messages", len(pub.calls))
	}
	for i, msg := range pub.calls[0] {
		want := in.Commands[i]
		if msg.Topic != want.Topic {
			t.Errorf("message %d topic %q, want %q", i, msg.Topic, want.Topic)
		}
		if string(msg.Key) != testRequestID {
			t.Errorf("message %d key %q, want the request id", i, msg.Key)
		}
		if len(msg.Headers) != 1 || msg.Headers[0].Key != wire.HeaderSchema || string(msg.Headers[0].Value) != wire.SchemaCommand {
			t.Errorf("message %d headers %v, want %s=%s", i, msg.Headers, wire.HeaderSchema, wire.SchemaCommand)
		}
		got, err := wire.DecodeCommand(msg.Value)
		if err != nil {
			t.Fatalf("message %d is not a valid command: %v", i, err)
		}
		if got.CommandID != want.Command.CommandID || got.System != want.Command.System ||
			!slices.Equal(got.Identifiers, want.Command.Identifiers) || !got.IssuedAt.Equal(want.Command.IssuedAt) {
			t.Errorf("message %d decodes to %+v, want %+v", i, got, want.Command)
		}
	}
	if len(led.deltas) != 1 || led.deltas[0].Status != lethe.RequestRunning {
		t.Errorf("ledger deltas %+v, want one with status running", led.deltas)
	}
}

func TestSyncSkipsEmptyParts(t *testing.T) {
	t.Run("empty ledger", func(t *testing.T) {
		j := &journal{}
		env := newEnv()
		a := &Activities{Publisher: &fakePublisher{j: j}, Ledger: &fakeLedger{j: j}}
		env.RegisterActivity(a)
		in := SyncInput{RequestID: testRequestID,
			Commands: []Outbound{{Topic: "t", Command: command(testCommandA, "billing")}}}
		if _, err := env.ExecuteActivity(a.Sync, in); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if got, want := j.list(), []string{"publish"}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
	t.Run("no commands", func(t *testing.T) {
		j := &journal{}
		env := newEnv()
		a := &Activities{Publisher: &fakePublisher{j: j}, Ledger: &fakeLedger{j: j}}
		env.RegisterActivity(a)
		in := SyncInput{RequestID: testRequestID, Ledger: lethe.LedgerDelta{Events: []lethe.AuditEvent{{Kind: lethe.AuditCompleted}}}}
		if _, err := env.ExecuteActivity(a.Sync, in); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if got, want := j.list(), []string{"ledger:" + testRequestID}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
}

func TestSyncDoesNotWriteLedgerWhenPublishFails(t *testing.T) {
	j := &journal{}
	env := newEnv()
	a := &Activities{Publisher: &fakePublisher{j: j, err: errors.New("broker down")}, Ledger: &fakeLedger{j: j}}
	env.RegisterActivity(a)
	in := SyncInput{RequestID: testRequestID,
		Commands: []Outbound{{Topic: "t", Command: command(testCommandA, "billing")}},
		Ledger:   lethe.LedgerDelta{Status: lethe.RequestRunning}}
	_, err := env.ExecuteActivity(a.Sync, in)
	if err == nil {
		t.Fatal("Sync succeeded, want the publisher's error")
	}
	if got, want := j.list(), []string{"publish"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name         string
		publishErr   error
		ledgerErr    error
		commands     []Outbound
		nonRetryable bool
		errType      string
	}{
		{name: "transient publish", publishErr: errors.New("leader not available")},
		{name: "transient ledger", ledgerErr: errors.New("connection refused")},
		{name: "invalid ledger", ledgerErr: lethe.Errorf(lethe.KindInvalid, "invalid_delta", "bad status"),
			nonRetryable: true, errType: ErrTypeInvalid},
		{name: "unknown request", ledgerErr: lethe.Errorf(lethe.KindNotFound, "not_found", "no such request"),
			nonRetryable: true, errType: ErrTypeNotFound},
		{name: "conflict stays retryable", ledgerErr: lethe.Errorf(lethe.KindConflict, "conflict", "busy")},
		{name: "command without topic", commands: []Outbound{{Command: command(testCommandA, "billing")}},
			nonRetryable: true, errType: ErrTypeInvalid},
		{name: "command breaking the contract", commands: []Outbound{{Topic: "t", Command: func() wire.Command {
			c := command(testCommandA, "billing")
			c.CommandID = "not-a-uuid"
			return c
		}()}}, nonRetryable: true, errType: ErrTypeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{}
			env := newEnv()
			a := &Activities{Publisher: &fakePublisher{j: j, err: tt.publishErr}, Ledger: &fakeLedger{j: j, err: tt.ledgerErr}}
			env.RegisterActivity(a)
			cmds := tt.commands
			if cmds == nil {
				cmds = []Outbound{{Topic: "t", Command: command(testCommandA, "billing")}}
			}
			_, err := env.ExecuteActivity(a.Sync, SyncInput{RequestID: testRequestID, Commands: cmds,
				Ledger: lethe.LedgerDelta{Status: lethe.RequestRunning}})
			if err == nil {
				t.Fatal("Sync succeeded, want an error")
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Errorf("error %q contains an identifier value", err)
			}
			var appErr *temporal.ApplicationError
			isApp := errors.As(err, &appErr)
			if got := isApp && appErr.NonRetryable(); got != tt.nonRetryable {
				t.Errorf("non-retryable = %v, want %v (error %v)", got, tt.nonRetryable, err)
			}
			if tt.nonRetryable && appErr.Type() != tt.errType {
				t.Errorf("error type %q, want %q", appErr.Type(), tt.errType)
			}
		})
	}
}

func TestPlanClassifiesRegistryErrors(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		nonRetryable bool
	}{
		{name: "database down", err: errors.New("dial tcp: connection refused")},
		{name: "bad type", err: lethe.Errorf(lethe.KindInvalid, "invalid_type", "bad identifier type"), nonRetryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv()
			a := &Activities{Registry: &fakeRegistry{err: tt.err}}
			env.RegisterActivity(a)
			_, err := env.ExecuteActivity(a.Plan, PlanInput{RequestID: testRequestID, Types: []string{"email"}})
			if err == nil {
				t.Fatal("Plan succeeded, want an error")
			}
			var appErr *temporal.ApplicationError
			if got := errors.As(err, &appErr) && appErr.NonRetryable(); got != tt.nonRetryable {
				t.Errorf("non-retryable = %v, want %v (error %v)", got, tt.nonRetryable, err)
			}
		})
	}
}

// Plan digests the whole subject to find holds, asks the registry to
// record only the revealed identifiers, judges holds at the workflow's
// time, and passes each system's hold on to the workflow.
func TestPlanDigestsSubjectAndReportsHolds(t *testing.T) {
	dg, err := digest.New(bytes.Repeat([]byte{3}, digest.MinKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	hold := &lethe.Hold{ID: "case-1", Basis: "litigation", Active: true}
	reg := &fakeRegistry{
		systems: []lethe.System{{Name: "orders", Identifiers: []string{"email"}}, {Name: "crm", Identifiers: []string{"email"}}},
		holds:   map[string]*lethe.Hold{"orders": hold},
	}
	env := newEnv()
	a := &Activities{Registry: reg, Digester: dg}
	env.RegisterActivity(a)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	revealed := wire.Identifier{Type: "user_id", Value: "u-9"}
	v, err := env.ExecuteActivity(a.Plan, PlanInput{RequestID: testRequestID, Types: []string{"email"},
		Subject: []wire.Identifier{{Type: "email", Value: secretValue}, revealed}, Learned: []wire.Identifier{revealed}, At: at})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var res PlanResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	q := reg.queries[0]
	wantSubject := []lethe.SubjectDigest{{Type: "email", Digest: dg.Sum("email", secretValue)}, {Type: "user_id", Digest: dg.Sum("user_id", "u-9")}}
	if !slices.Equal(q.Subject, wantSubject) || !slices.Equal(q.Record, wantSubject[1:]) || !q.At.Equal(at) || q.RequestID != testRequestID {
		t.Errorf("query %+v, want the subject's digests, the revealed one to record, at %v", q, at)
	}
	if len(res.Targets) != 2 || res.Targets[0].System != "crm" || res.Targets[0].Hold != nil ||
		res.Targets[1].Hold == nil || res.Targets[1].Hold.ID != "case-1" {
		t.Errorf("targets %+v, want crm free and orders held by case-1", res.Targets)
	}
}

type fakeNotifier struct {
	got []lethe.Escalation
	err error
}

func (n *fakeNotifier) Notify(_ context.Context, e lethe.Escalation) error {
	n.got = append(n.got, e)
	return n.err
}

type fakeCounter map[lethe.EscalationKind]int

func (c fakeCounter) Count(k lethe.EscalationKind) { c[k]++ }

// Escalate stamps the schema, counts once and posts to the notifier; a
// notifier failure is returned so that it is retried.
func TestEscalateNotifiesAndCounts(t *testing.T) {
	n := &fakeNotifier{}
	counts := fakeCounter{}
	env := newEnv()
	a := &Activities{Escalations: n, Metrics: counts}
	env.RegisterActivity(a)
	e := lethe.Escalation{RequestID: testRequestID, Kind: lethe.EscalationTarget, Point: "target", Open: []string{"orders"}}
	if _, err := env.ExecuteActivity(a.Escalate, e); err != nil {
		t.Fatalf("Escalate: %v", err)
	}
	if len(n.got) != 1 || n.got[0].Schema != lethe.SchemaEscalation || n.got[0].RequestID != testRequestID {
		t.Errorf("notified %+v, want the escalation with its schema", n.got)
	}
	if counts[lethe.EscalationTarget] != 1 {
		t.Errorf("counts %v, want one target escalation", counts)
	}
	n.err = errors.New("webhook down")
	if _, err := env.ExecuteActivity(a.Escalate, e); err == nil || !strings.Contains(err.Error(), "webhook down") {
		t.Errorf("Escalate with the webhook down = %v, want its error", err)
	}
}
