package connectortest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/connectors/connectortest"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// testTimeout bounds each kit run here; none comes near it.
const testTimeout = 3 * time.Minute

const (
	typeUserID   = "user_id"
	typeDeviceID = "device_id"
	// recordsPerSubject is what seeding stores for a subject.
	recordsPerSubject = 3
)

// service is an in-memory service holding records by user id, each user
// with one device id the handlers reveal. The handlers below differ only in
// how they erase from it.
type service struct {
	mu      sync.Mutex
	records map[string]int64  // user id → records held
	devices map[string]string // user id → device id
	done    map[string]connectors.Result
}

func newService() *service {
	return &service{records: map[string]int64{}, devices: map[string]string{}, done: map[string]connectors.Result{}}
}

func newSubject() connectortest.Subject {
	id := uuid.NewString()
	return connectortest.Subject{
		Identifiers: []wire.Identifier{{Type: typeUserID, Value: "u-" + id}},
		Derived:     []wire.Identifier{{Type: typeDeviceID, Value: "d-" + id}},
	}
}

func (s *service) seed(_ context.Context, subj connectortest.Subject) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	user := subj.Identifiers[0].Value
	s.records[user] += recordsPerSubject
	s.devices[user] = subj.Derived[0].Value
	return nil
}

func (s *service) remaining(_ context.Context, subj connectortest.Subject) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, id := range subj.Identifiers {
		n += s.records[id.Value]
	}
	return n, nil
}

// eraseOptions are the ways the handlers below erase.
type eraseOptions struct {
	remember     bool // answer a repeated command id with its recorded result
	ignoreDryRun bool
}

// erase is the body of the handlers: find the user's records and, unless
// it is a dry run, remove them.
func (s *service) erase(ctx context.Context, req connectors.Request, opts eraseOptions) (connectors.Result, error) {
	if err := ctx.Err(); err != nil {
		return connectors.Result{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.done[req.CommandID]; ok && opts.remember {
		return r, nil
	}
	var n int64
	var derived []wire.Identifier
	for _, user := range req.Values(typeUserID) {
		if s.records[user] > 0 {
			n += s.records[user]
			derived = append(derived, wire.Identifier{Type: typeDeviceID, Value: s.devices[user]})
		}
	}
	res := connectors.Result{Outcome: wire.OutcomeNotFound}
	if n > 0 {
		res = connectors.Result{Outcome: wire.OutcomeErased, Records: n, Derived: derived}
	}
	if !req.DryRun || opts.ignoreDryRun {
		for _, user := range req.Values(typeUserID) {
			delete(s.records, user)
		}
	}
	if !req.DryRun {
		s.done[req.CommandID] = res
	}
	return res, nil
}

func (s *service) config(h connectors.HandlerFunc) connectortest.Config {
	return connectortest.Config{
		System:         "accounts",
		Handler:        h,
		NewSubject:     newSubject,
		Seed:           s.seed,
		Remaining:      s.remaining,
		RevealsDerived: true,
	}
}

// correct is a conformant handler over s.
func (s *service) correct() connectors.HandlerFunc {
	return func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		return s.erase(ctx, req, eraseOptions{remember: true})
	}
}

func check(t *testing.T, cfg connectortest.Config) []connectortest.Failure {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	failures := connectortest.Check(ctx, cfg)
	for _, f := range failures {
		t.Logf("kit reported: %s", f)
	}
	return failures
}

func TestConformantHandlerPasses(t *testing.T) {
	t.Parallel()
	s := newService()
	if failures := check(t, s.config(s.correct())); len(failures) != 0 {
		t.Errorf("a conformant handler failed %d check(s), want none", len(failures))
	}
}

func TestRunPassesConformantHandler(t *testing.T) {
	t.Parallel()
	s := newService()
	connectortest.Run(t, s.config(s.correct()))
}

// wantOnly asserts that failures hold exactly one failure, of check, whose
// problem says every one of phrases.
func wantOnly(t *testing.T, failures []connectortest.Failure, check string, phrases ...string) {
	t.Helper()
	if len(failures) != 1 || failures[0].Check != check {
		t.Fatalf("failures = %v, want exactly one, of check %s", failures, check)
	}
	for _, p := range phrases {
		if !strings.Contains(failures[0].Problem, p) {
			t.Errorf("problem %q does not say %q", failures[0].Problem, p)
		}
	}
}

func TestHandlerThatErasesTwiceFails(t *testing.T) {
	t.Parallel()
	s := newService()
	// It deletes again whatever a repeated command names, and so answers
	// the repeat not_found: the SDK's de-duplication hides this on the
	// wire, the direct calls do not.
	h := func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		return s.erase(ctx, req, eraseOptions{remember: false})
	}
	wantOnly(t, check(t, s.config(h)), connectortest.CheckRepeatedCommand,
		"answered not_found with 0 records after erased with 3",
		"ran the command again instead of recognising it",
		"Remember each command_id Erase carried out")
}

func TestHandlerThatIgnoresDryRunFails(t *testing.T) {
	t.Parallel()
	s := newService()
	h := func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		return s.erase(ctx, req, eraseOptions{remember: true, ignoreDryRun: true})
	}
	wantOnly(t, check(t, s.config(h)), connectortest.CheckDryRun,
		"a dry run changed the service's data (Remaining went from 3 to 0)",
		"Erase must change nothing")
}

func TestHandlerThatNeverReturnsFails(t *testing.T) {
	t.Parallel()
	s := newService()
	// It blocks ignoring its context; released only when the test ends, so
	// that the goroutines the kit had to leave behind end too.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		<-release
		return connectors.Result{}, ctx.Err()
	}
	cfg := s.config(h)
	// Every check fails whatever its timeout; a short one keeps this test
	// short. Through the SDK the failure reads "Erase was called and had not
	// returned", or on a slow machine "Erase was never called": both begin
	// alike.
	cfg.Timeout = 2 * time.Second
	failures := check(t, cfg)

	want := map[string]string{
		connectortest.CheckEraseLeavesNothing: "no confirmation within 2s",
		connectortest.CheckRepeatedCommand:    "no confirmation within 2s",
		connectortest.CheckUnknownSubject:     "no confirmation within 2s",
		connectortest.CheckDryRun:             "no confirmation within 2s",
		connectortest.CheckUnknownType:        "no confirmation within 2s",
		connectortest.CheckMalformed:          "did not answer the next command: no confirmation within 2s",
		connectortest.CheckCancellation:       "Erase must return when its context is canceled",
		connectortest.CheckSignedMessages:     "no confirmation within 2s",
		connectortest.CheckDerived:            "no confirmation within 2s",
	}
	got := map[string]string{}
	for _, f := range failures {
		got[f.Check] = f.Problem
	}
	if len(failures) != len(want) {
		t.Errorf("%d failures, want one per check (%d)", len(failures), len(want))
	}
	for check, phrase := range want {
		if !strings.Contains(got[check], phrase) {
			t.Errorf("check %s: problem %q does not say %q", check, got[check], phrase)
		}
	}
}

func TestHandlerThatIgnoresCanceledContextFails(t *testing.T) {
	t.Parallel()
	s := newService()
	// It returns promptly but erases whatever its context says.
	h := func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		return s.erase(context.Background(), req, eraseOptions{remember: true})
	}
	wantOnly(t, check(t, s.config(h)), connectortest.CheckCancellation,
		"Erase went ahead with a context that was already canceled", "stop work when its context is canceled")
}

func TestHandlerThatHidesDerivedIdentifiersFails(t *testing.T) {
	t.Parallel()
	s := newService()
	h := func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		res, err := s.erase(ctx, req, eraseOptions{remember: true})
		res.Derived = nil
		return res, err
	}
	wantOnly(t, check(t, s.config(h)), connectortest.CheckDerived,
		"lacks its derived identifier(s) of type device_id", "Result.Derived")
}

func TestHandlerThatErasesOthersFails(t *testing.T) {
	t.Parallel()
	s := newService()
	// It matches every record when none matches exactly: the over-eager
	// DELETE the unknown-subject check is there to catch.
	h := func(ctx context.Context, req connectors.Request) (connectors.Result, error) {
		res, err := s.erase(ctx, req, eraseOptions{remember: true})
		if err == nil && res.Outcome == wire.OutcomeNotFound && !req.DryRun {
			s.mu.Lock()
			clear(s.records)
			s.mu.Unlock()
		}
		return res, err
	}
	wantOnly(t, check(t, s.config(h)), connectortest.CheckUnknownSubject,
		"changed another subject's data (Remaining went from 3 to 0)")
}

func TestInvalidConfigFails(t *testing.T) {
	t.Parallel()
	s := newService()
	tests := []struct {
		name   string
		change func(*connectortest.Config)
		want   string
	}{
		{"bad system", func(c *connectortest.Config) { c.System = "Bad Name" }, "not a valid system name"},
		{"no handler", func(c *connectortest.Config) { c.Handler = nil }, "Handler is nil"},
		{"no seed", func(c *connectortest.Config) { c.Seed = nil }, "Seed is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.config(s.correct())
			tt.change(&cfg)
			failures := connectortest.Check(context.Background(), cfg)
			if len(failures) != 1 || failures[0].Check != connectortest.CheckConfig || !strings.Contains(failures[0].Problem, tt.want) {
				t.Errorf("failures = %v, want one config failure saying %q", failures, tt.want)
			}
		})
	}
}

func TestFailureNamesItsCheck(t *testing.T) {
	t.Parallel()
	f := connectortest.Failure{Check: connectortest.CheckDryRun, Problem: "a dry run changed the service's data"}
	if got, want := f.Error(), "dry_run: a dry run changed the service's data"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if f.String() != f.Error() {
		t.Errorf("String() = %q, want Error()'s %q", f.String(), f.Error())
	}
}

func TestGivenBrokerIsUsedAndCleanedUp(t *testing.T) {
	t.Parallel()
	brokers, _ := testenv.Kafka(t)
	s := newService()
	cfg := s.config(s.correct())
	cfg.Brokers = brokers
	if failures := check(t, cfg); len(failures) != 0 {
		t.Fatalf("a conformant handler failed %d check(s) on a given broker, want none", len(failures))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A transport of its own: the shared one caches metadata.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	var confirmations []kafka.OffsetRequest
	for _, topic := range md.Topics {
		if strings.HasPrefix(topic.Name, "lethe.conformance.") {
			t.Errorf("topic %s left behind on the given broker, want the kit's topics deleted", topic.Name)
		}
		if topic.Name == wire.ConfirmationsTopic {
			for _, p := range topic.Partitions {
				confirmations = append(confirmations, kafka.LastOffsetOf(p.ID))
			}
		}
	}
	offsets, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{wire.ConfirmationsTopic: confirmations}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	var written int64
	for _, p := range offsets.Topics[wire.ConfirmationsTopic] {
		written += p.LastOffset
	}
	if written == 0 {
		t.Error("no confirmation was written to the given broker, want the checks to run on it")
	}
}

// batchService is a BatchHandler over a service: EraseBatch erases each
// item as Erase would a command of its own, keyed by the item's command id.
type batchService struct {
	s    *service
	opts eraseOptions
	// failAll fails every item when any item fails, the mistake
	// batch_partial_failure catches.
	failAll bool
}

func (b *batchService) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return b.s.erase(ctx, req, b.opts)
}

func (b *batchService) EraseBatch(ctx context.Context, req connectors.BatchRequest) ([]connectors.ItemResult, error) {
	out := make([]connectors.ItemResult, len(req.Items))
	for i, it := range req.Items {
		r, err := b.s.erase(ctx, connectors.Request{CommandID: connectors.ItemCommandID(req.CommandID, it.ItemID),
			RequestID: it.ItemID, System: req.System, Attempt: req.Attempt, Identifiers: it.Identifiers, DryRun: req.DryRun}, b.opts)
		if err != nil {
			return nil, err
		}
		out[i] = connectors.ItemResult{ItemID: it.ItemID, Result: r}
	}
	return out, nil
}

func (s *service) batchConfig(h connectors.Handler) connectortest.Config {
	cfg := s.config(nil)
	cfg.Handler, cfg.Batch = h, true
	return cfg
}

func TestConformantHandlersPassTheBatchChecks(t *testing.T) {
	t.Parallel()
	s := newService()
	if failures := check(t, s.batchConfig(s.correct())); len(failures) != 0 {
		t.Errorf("a conformant plain handler failed %d check(s) with Batch, want none", len(failures))
	}
	b := &batchService{s: s, opts: eraseOptions{remember: true}}
	if failures := check(t, s.batchConfig(b)); len(failures) != 0 {
		t.Errorf("a conformant BatchHandler failed %d check(s), want none", len(failures))
	}
}

func TestBatchHandlerThatErasesTwiceFails(t *testing.T) {
	t.Parallel()
	s := newService()
	b := &batchService{s: s, opts: eraseOptions{remember: false}}
	failures := check(t, s.batchConfig(b))
	var batch []connectortest.Failure
	for _, f := range failures {
		if f.Check == connectortest.CheckBatchRepeated {
			batch = append(batch, f)
		}
	}
	if len(batch) != 1 || !strings.Contains(batch[0].Problem, "EraseBatch answered item 0 not_found with 0 records after erased with 3") {
		t.Errorf("failures = %v, want batch_repeated_command_id to catch EraseBatch running a repeat again", failures)
	}
}

func TestBatchHandlerThatIgnoresDryRunFails(t *testing.T) {
	t.Parallel()
	s := newService()
	b := &batchService{s: s, opts: eraseOptions{remember: true, ignoreDryRun: true}}
	failures := check(t, s.batchConfig(b))
	var found bool
	for _, f := range failures {
		found = found || f.Check == connectortest.CheckBatchDryRun && strings.Contains(f.Problem, "a dry-run batch changed item 0's data")
	}
	if !found {
		t.Errorf("failures = %v, want batch_dry_run among them", failures)
	}
}

// failingAll is a BatchHandler that fails the whole call when one of its
// items fails: it errs on the second item the handler sees of every
// three-item batch, after erasing the first.
type failingAll struct{ batchService }

func (f *failingAll) EraseBatch(ctx context.Context, req connectors.BatchRequest) ([]connectors.ItemResult, error) {
	out, err := f.batchService.EraseBatch(ctx, req)
	if err != nil || len(req.Items) != 2 {
		return out, err
	}
	for i := range out {
		out[i].Result = connectors.Result{Outcome: wire.OutcomeFailed, Detail: "one item failed, so all did"}
	}
	return out, nil
}

func TestBatchHandlerThatFailsEveryItemFails(t *testing.T) {
	t.Parallel()
	s := newService()
	f := &failingAll{batchService{s: s, opts: eraseOptions{remember: true}}}
	failures := check(t, s.batchConfig(f))
	var found bool
	for _, fl := range failures {
		found = found || fl.Check == connectortest.CheckBatchPartial && strings.Contains(fl.Problem, "One item's failure must not fail the others")
	}
	if !found {
		t.Errorf("failures = %v, want batch_partial_failure among them", failures)
	}
}
