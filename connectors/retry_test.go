package connectors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

func TestPermanent(t *testing.T) {
	if connectors.Permanent(nil) != nil {
		t.Errorf("Permanent(nil) != nil")
	}
	cause := errors.New("check constraint")
	err := connectors.Permanent(fmt.Errorf("delete: %w", cause))
	if !errors.Is(err, cause) || err.Error() != "delete: check constraint" {
		t.Errorf("Permanent hides its error: Is=%v, text %q", errors.Is(err, cause), err)
	}
}

// TestRunRetriesHandlerErrors runs one command per behaviour through one
// Run and checks the confirmation, the number of handler calls and what the
// observer heard.
func TestRunRetriesHandlerErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)

	requestID := uuid.NewString()
	transient, failing, permanent, panicking := newCommand(requestID), newCommand(requestID), newCommand(requestID), newCommand(requestID)
	var mu sync.Mutex
	calls := make(map[string]int)
	h := connectors.HandlerFunc(func(_ context.Context, req connectors.Request) (connectors.Result, error) {
		mu.Lock()
		calls[req.CommandID]++
		n := calls[req.CommandID]
		mu.Unlock()
		switch req.CommandID {
		case transient.CommandID:
			if n < 3 {
				return connectors.Result{}, errors.New("deadlock detected")
			}
			return connectors.Result{Outcome: wire.OutcomeErased, Records: 2}, nil
		case failing.CommandID:
			return connectors.Result{}, errors.New("connection refused")
		case permanent.CommandID:
			return connectors.Result{}, connectors.Permanent(errors.New("violates foreign key"))
		default:
			panic("boom")
		}
	})
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}
	cfg.Observer = obs
	start(t, cfg, h)

	produce(ctx, t, brokers, commandMessage(t, transient), commandMessage(t, failing), commandMessage(t, permanent), commandMessage(t, panicking))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, panicking.CommandID)
	if len(got) != 4 {
		t.Fatalf("got %d confirmations, want 4", len(got))
	}
	tests := []struct {
		name      string
		cmd       wire.Command
		outcome   wire.Outcome
		retryable bool
		detail    string
		calls     int
	}{
		{"transient error, then success", transient, wire.OutcomeErased, false, "", 3},
		{"error on every call", failing, wire.OutcomeFailed, true, "the handler failed; the service's logs say why", 3},
		{"permanent error", permanent, wire.OutcomeFailed, false, "the handler failed and retrying cannot help; the service's logs say why", 1},
		{"panic", panicking, wire.OutcomeFailed, true, "the handler failed; the service's logs say why", 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := got[i]
			if c.CommandID != tt.cmd.CommandID {
				t.Fatalf("confirmation %d answers another command", i)
			}
			if c.Outcome != tt.outcome || c.Retryable != tt.retryable || c.Detail != tt.detail {
				t.Errorf("confirmation outcome=%s retryable=%v detail=%q, want %s %v %q", c.Outcome, c.Retryable, c.Detail, tt.outcome, tt.retryable, tt.detail)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls[tt.cmd.CommandID] != tt.calls {
				t.Errorf("handler called %d times, want %d", calls[tt.cmd.CommandID], tt.calls)
			}
		})
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.retried != 4 {
		t.Errorf("observer heard %d retries, want 4 (2 for each command that failed twice or more)", obs.retried)
	}
	var attempts []int
	for _, e := range obs.handled {
		attempts = append(attempts, e.attempts)
		if e.d < 0 {
			t.Errorf("handled event with a negative duration %v", e.d)
		}
	}
	slices.Sort(attempts)
	if fmt.Sprint(attempts) != "[1 1 3 3]" {
		t.Errorf("observer heard handled commands with attempts %v, want [1 1 3 3]", attempts)
	}
	if len(obs.systems) != 1 || !obs.systems[system] {
		t.Errorf("observer heard systems %v, want only %s", obs.systems, system)
	}
}

func TestRunRetryDisabled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(func(connectors.Request) (connectors.Result, error) {
		return connectors.Result{}, errors.New("timeout")
	})
	cfg := config(brokers, nil)
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 1}
	start(t, cfg, h)

	cmd := commandFor()
	produce(ctx, t, brokers, commandMessage(t, cmd))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)
	if c := got[len(got)-1]; c.Outcome != wire.OutcomeFailed || !c.Retryable {
		t.Errorf("confirmation = %+v, want failed and retryable", c)
	}
	if n := h.count(cmd.CommandID); n != 1 {
		t.Errorf("handler called %d times with retries disabled, want 1", n)
	}
}

// TestRunObserverHearsDuplicatesAndDeadLetters checks the events not covered above:
// duplicates and dead letters.
func TestRunObserverHearsDuplicatesAndDeadLetters(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Observer = obs
	start(t, cfg, newRecorder(nil))

	requestID := uuid.NewString()
	cmd := newCommand(requestID)
	other := newCommand(requestID)
	other.System = "billing"
	bad := commandMessage(t, cmd)
	bad.Value = []byte("{}")
	barrier := newCommand(requestID)
	produce(ctx, t, brokers, commandMessage(t, cmd), commandMessage(t, cmd), commandMessage(t, other), bad, commandMessage(t, barrier))
	newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, barrier.CommandID)

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.duplicates != 1 {
		t.Errorf("observer heard %d duplicates, want 1", obs.duplicates)
	}
	want := map[string]int{connectors.DLQOtherSystem: 1, connectors.DLQMalformed: 1}
	if fmt.Sprint(obs.deadLettered) != fmt.Sprint(want) {
		t.Errorf("observer heard dead letters %v, want %v", obs.deadLettered, want)
	}
	if len(obs.handled) != 2 {
		t.Errorf("observer heard %d handled commands, want 2", len(obs.handled))
	}
	for _, e := range obs.handled {
		if e.outcome != wire.OutcomeErased || e.attempts != 1 {
			t.Errorf("handled event %+v, want erased after 1 attempt", e)
		}
	}
}

func TestConfigValidateNewFields(t *testing.T) {
	base := connectors.Config{Brokers: []string{"127.0.0.1:1"}, System: system}
	tests := []struct {
		name   string
		change func(*connectors.Config)
		want   string
	}{
		{"negative concurrency", func(c *connectors.Config) { c.Concurrency = -1 }, "concurrency"},
		{"negative retry attempts", func(c *connectors.Config) { c.Retry.MaxAttempts = -1 }, "retry"},
		{"negative retry delay", func(c *connectors.Config) { c.Retry.Initial = -time.Second }, "retry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error about %s", err, tt.want)
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	ok := base
	ok.ShutdownGrace = -1 // cancel handlers at once: allowed
	if err := ok.Validate(); err != nil {
		t.Errorf("negative shutdown grace: %v, want it accepted", err)
	}
}
