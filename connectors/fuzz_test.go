package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// FuzzHandleMessage drives the SDK's per-message path, the one every
// message of a service's command topic goes through, with any key, value
// and handler behaviour. Whatever arrives, nothing panics; a valid command
// addressed to the service reaches the handler and comes out as exactly one
// valid confirmation of that command; anything else reaches no handler and
// comes out as exactly one dead letter whose reason header says why; no
// identifier value ends up in a reason, a confirmation's detail or the log;
// and the same message delivered again, twice in one batch, is answered
// alike, from the dedup store when the first answer may be replayed.
//
// It calls the consumer's batch handling directly rather than going
// through a broker, so that it runs thousands of inputs a second; the run
// tests cover the Kafka plumbing around it.
func FuzzHandleMessage(f *testing.F) {
	good := `{"schema":"erasure.command.v1","command_id":"` + fuzzCommandID + `","request_id":"` + fuzzRequestID +
		`","system":"orders","attempt":1,"identifiers":[{"type":"email","value":"` + fuzzValue + `"}],` +
		`"issued_at":"2026-11-25T10:00:00Z","confirm_by":"2026-11-28T10:00:00Z","dry_run":false}`
	for _, s := range []struct {
		value string
		mode  uint8
		stale bool
	}{
		{good, modeErased, false},
		{good, modeNotFound, false},
		{good, modeRetained, false},
		{good, modeFailedRetryable, false},
		{good, modeError, false},
		{good, modePermanent, false},
		{good, modePanic, false},
		{good, modeInvalidResult, true},
		{strings.Replace(good, `"dry_run":false`, `"dry_run":true`, 1), modeErased, false},
		{strings.Replace(good, `"system":"orders"`, `"system":"billing"`, 1), modeErased, false},
		{strings.Replace(good, `"system":"orders"`, `"system":"`+fuzzValue+`"`, 1), modeErased, true},
		{strings.Replace(good, `"attempt":1`, `"attempt":0`, 1), modeErased, false},
		{strings.Replace(good, `"type":"email"`, `"type":"`+fuzzValue+`"`, 1), modeErased, false},
		{strings.Replace(good, `"identifiers":[`, `"identifiers":[{"type":"user_id","value":"u-1"},`, 1), modeErased, false},
		{strings.Replace(good, `"schema":"erasure.command.v1"`, `"schema":"erasure.confirmation.v1"`, 1), modeErased, false},
		{good + ` {"trailing":"` + fuzzValue + `"}`, modeErased, false},
		{good[:len(good)/2], modeErased, false},
		{`{"` + fuzzValue + `":1}`, modeErased, false},
		{``, modeErased, true},
		{`null`, modeErased, false},
	} {
		f.Add([]byte(s.value), []byte(fuzzRequestID), s.mode, s.stale)
	}
	f.Fuzz(func(t *testing.T, value, key []byte, mode uint8, staleReason bool) {
		mode %= modeCount
		logs := &bytes.Buffer{}
		h := &fuzzHandler{mode: mode}
		c := fuzzConsumer(t, logs, h)
		m := kafka.Message{Topic: fuzzTopic, Partition: 0, Offset: 7, Key: key, Value: value,
			Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(wire.SchemaCommand)}}}
		if staleReason {
			m.Headers = append(m.Headers, kafka.Header{Key: wire.HeaderDLQReason, Value: nil})
		}
		cmd, err := wire.DecodeCommand(value)
		valid := err == nil && cmd.System == fuzzSystem
		secrets := fuzzStringsIn(value)

		out := fuzzHandleBatch(t, c, m)
		first := fuzzCheckOutput(t, m, out[0], valid, cmd, mode, secrets)
		calls := h.callCount()
		switch {
		case !valid && calls != 0:
			t.Fatalf("the handler was called %d times for a message that is not a valid command of %s", calls, fuzzSystem)
		case valid && calls != fuzzWantCalls(mode):
			t.Fatalf("the handler was called %d times for one delivery in mode %d, want %d", calls, mode, fuzzWantCalls(mode))
		}

		// Delivered again, twice in one batch.
		out = fuzzHandleBatch(t, c, m, m)
		for _, o := range out {
			again := fuzzCheckOutput(t, m, o, valid, cmd, mode, secrets)
			if valid && first.replayable && !fuzzSameAnswer(first.conf, again.conf) {
				t.Fatalf("a redelivered command was answered %+v, want its recorded answer %+v", again.conf, first.conf)
			}
		}
		if again := h.callCount() - calls; valid && first.replayable && again != 0 {
			t.Fatalf("the handler was called %d more times for a command whose answer was recorded", again)
		}

		for _, p := range h.problems() {
			t.Error(p)
		}
		fuzzCheckLog(t, logs.String(), secrets)
	})
}

const (
	fuzzSystem    = "orders"
	fuzzTopic     = wire.TopicPrefix + fuzzSystem
	fuzzCommandID = "0b5c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	fuzzRequestID = "6f1c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	// fuzzValue is an identifier value with characters no fixed text of
	// the SDK contains, so that finding it in one means it was copied.
	fuzzValue = "Ada Lövelace <ada@example.invalid>"
)

// What the fuzzed handler does with a command.
const (
	modeErased uint8 = iota
	modeNotFound
	modeRetained
	modeFailedRetryable
	modeError // a transient error, every time
	modePermanent
	modePanic
	modeInvalidResult // derived identifiers of a malformed type, carrying the command's values
	modeCount
)

// fuzzRetry retries once, at once, so that a failing handler costs the
// fuzzer no time.
var fuzzRetry = RetryPolicy{MaxAttempts: 2, Initial: time.Nanosecond, Max: time.Nanosecond}

func fuzzWantCalls(mode uint8) int {
	if mode == modeError {
		return fuzzRetry.MaxAttempts
	}
	return 1
}

// fuzzWant is the outcome and retryability Run's documentation promises for
// each mode.
func fuzzWant(mode uint8) (wire.Outcome, bool) {
	switch mode {
	case modeErased:
		return wire.OutcomeErased, false
	case modeNotFound:
		return wire.OutcomeNotFound, false
	case modeRetained:
		return wire.OutcomeRetained, false
	case modeFailedRetryable, modeError, modePanic:
		return wire.OutcomeFailed, true
	default:
		return wire.OutcomeFailed, false
	}
}

func fuzzConsumer(t *testing.T, logs *bytes.Buffer, h Handler) *consumer {
	t.Helper()
	cfg := Config{
		Brokers: []string{"127.0.0.1:1"}, // never dialled: no broker is involved
		System:  fuzzSystem,
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Retry:   fuzzRetry,
		Now:     func() time.Time { return time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC) },
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg = cfg.withDefaults()
	return &consumer{cfg: cfg, h: h, log: cfg.Logger.With("system", cfg.System, "topic", cfg.Topic)}
}

// fuzzHandleBatch runs the consumer's handling of one batch and returns what it
// would publish, one message per message of the batch.
func fuzzHandleBatch(t *testing.T, c *consumer, batch ...kafka.Message) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, ok := c.handle(ctx, ctx, ctx, batch)
	if !ok {
		t.Fatalf("handling a batch of %d was cut short", len(batch))
	}
	if len(results) != len(batch) {
		t.Fatalf("%d results for a batch of %d", len(results), len(batch))
	}
	out := make([]kafka.Message, len(batch))
	for i, r := range results {
		if !r.done {
			t.Fatalf("message %d of the batch was left unanswered while nothing was shutting down", i)
		}
		out[i] = r.msg
	}
	return out
}

type fuzzAnswer struct {
	conf       wire.Confirmation
	replayable bool
}

// fuzzCheckOutput asserts that out is what m deserves: cmd's confirmation when
// m is valid, m's dead letter otherwise.
func fuzzCheckOutput(t *testing.T, m, out kafka.Message, valid bool, cmd wire.Command, mode uint8, secrets []string) fuzzAnswer {
	t.Helper()
	if !valid {
		if out.Topic != wire.DLQTopic(m.Topic) {
			t.Fatalf("an invalid message went to %q, want the dead-letter topic %q", out.Topic, wire.DLQTopic(m.Topic))
		}
		var reasons []string
		for _, h := range out.Headers {
			if h.Key == wire.HeaderDLQReason {
				reasons = append(reasons, string(h.Value))
			}
		}
		if len(reasons) != 1 || reasons[0] == "" {
			t.Fatalf("dead letter has reason headers %q, want exactly one that is not empty", reasons)
		}
		if v, ok := fuzzQuoted(reasons[0], secrets); ok {
			t.Fatalf("dead-letter reason %q quotes %q from the message", reasons[0], v)
		}
		if !bytes.Equal(out.Key, m.Key) || (len(m.Value) <= maxDeadLetterValue && !bytes.Equal(out.Value, m.Value)) {
			t.Fatalf("dead letter does not keep the original key and value")
		}
		return fuzzAnswer{}
	}
	if out.Topic != wire.ConfirmationsTopic {
		t.Fatalf("a valid command went to %q, want %q", out.Topic, wire.ConfirmationsTopic)
	}
	if string(out.Key) != cmd.RequestID {
		t.Fatalf("confirmation keyed %q, want the request id", out.Key)
	}
	if s, _ := Header(out, wire.HeaderSchema); s != wire.SchemaConfirmation {
		t.Fatalf("confirmation schema header %q, want %q", s, wire.SchemaConfirmation)
	}
	conf, err := wire.DecodeConfirmation(out.Value)
	if err != nil {
		t.Fatalf("the SDK sent a confirmation Lethe would reject: %v", err)
	}
	if !answers(conf, cmd) {
		t.Fatalf("confirmation of command %s/%s/%s answers %s/%s/%s",
			cmd.CommandID, cmd.RequestID, cmd.System, conf.CommandID, conf.RequestID, conf.System)
	}
	if outcome, retryable := fuzzWant(mode); conf.Outcome != outcome || conf.Retryable != retryable {
		t.Fatalf("mode %d confirmed %s (retryable %t), want %s (retryable %t)", mode, conf.Outcome, conf.Retryable, outcome, retryable)
	}
	for _, id := range cmd.Identifiers {
		if strings.Contains(conf.Detail, id.Value) && fuzzDistinctive(id.Value) {
			t.Fatalf("confirmation detail %q quotes an identifier value", conf.Detail)
		}
	}
	return fuzzAnswer{conf: conf, replayable: conf.Outcome != wire.OutcomeFailed}
}

// fuzzSameAnswer compares confirmations as Lethe counts them.
func fuzzSameAnswer(a, b wire.Confirmation) bool {
	return a.CommandID == b.CommandID && a.RequestID == b.RequestID && a.System == b.System &&
		a.Outcome == b.Outcome && a.Records == b.Records && a.Detail == b.Detail && a.Retryable == b.Retryable &&
		a.ConfirmedAt.Equal(b.ConfirmedAt) && len(a.DerivedIdentifiers) == len(b.DerivedIdentifiers)
}

// fuzzCheckLog asserts that no log line repeats a string of the message.
func fuzzCheckLog(t *testing.T, logs string, secrets []string) {
	t.Helper()
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		for k, v := range rec {
			s, _ := v.(string)
			if x, ok := fuzzQuoted(k+"="+s, secrets); ok {
				t.Fatalf("log line %s repeats %q from the message", line, x)
			}
		}
	}
}

// fuzzHandler behaves as its mode says and notes every call it gets that
// is not a valid command of the service: the SDK must never pass one on.
type fuzzHandler struct {
	mode uint8

	mu    sync.Mutex
	calls int
	bad   []string
}

func (h *fuzzHandler) Erase(ctx context.Context, req Request) (Result, error) {
	h.mu.Lock()
	h.calls++
	cmd := wire.Command{Schema: wire.SchemaCommand, CommandID: req.CommandID, RequestID: req.RequestID, System: req.System,
		Attempt: req.Attempt, Identifiers: req.Identifiers, IssuedAt: req.IssuedAt, ConfirmBy: req.ConfirmBy, DryRun: req.DryRun}
	if err := cmd.Validate(); err != nil {
		h.bad = append(h.bad, "the handler received an invalid command: "+err.Error())
	}
	if req.System != fuzzSystem {
		h.bad = append(h.bad, "the handler received a command addressed to "+req.System)
	}
	h.mu.Unlock()

	switch h.mode {
	case modeErased:
		return Result{Outcome: wire.OutcomeErased, Records: int64(len(req.Identifiers))}, nil
	case modeNotFound:
		return Result{Outcome: wire.OutcomeNotFound}, nil
	case modeRetained:
		return Result{Outcome: wire.OutcomeRetained, Detail: "kept for 10 years under tax law"}, nil
	case modeFailedRetryable:
		return Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: "database unavailable"}, nil
	case modeError:
		return Result{}, errors.New("cannot erase " + req.Identifiers[0].Value)
	case modePermanent:
		return Result{}, Permanent(errors.New("legal hold on " + req.Identifiers[0].Value))
	case modePanic:
		panic("erasing " + req.Identifiers[0].Value)
	default:
		derived := make([]wire.Identifier, len(req.Identifiers))
		for i, id := range req.Identifiers {
			derived[i] = wire.Identifier{Type: "Not A Type", Value: id.Value}
		}
		return Result{Outcome: wire.OutcomeErased, Derived: derived}, nil
	}
}

func (h *fuzzHandler) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func (h *fuzzHandler) problems() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad
}

// fuzzStringsIn returns every JSON string of b, keys included, up to its first
// syntax error: the identifier values even a malformed message may carry.
func fuzzStringsIn(b []byte) []string {
	var out []string
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		if s, ok := tok.(string); ok {
			out = append(out, s)
		}
	}
}

// fuzzQuoted reports the first secret text contains, among those holding a
// character the SDK never writes on its own (fuzzValue is one); others
// could equal a field name or a fixed word by chance.
func fuzzQuoted(text string, secrets []string) (string, bool) {
	for _, s := range secrets {
		if fuzzDistinctive(s) && strings.Contains(text, s) {
			return s, true
		}
	}
	return "", false
}

func fuzzDistinctive(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return r >= 0x80 || r < 0x20 || strings.ContainsRune("@#~!&|<>`*\\", r)
	}) >= 0
}
