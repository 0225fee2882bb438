package connectors_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestRunShutdownLetsInFlightCallsFinish cancels Run while a handler call is
// in flight; within the grace the call finishes, and its confirmation is
// published and committed before Run returns nil.
func TestRunShutdownLetsInFlightCallsFinish(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	cmd := commandFor()
	started, finish := make(chan struct{}), make(chan struct{})
	var canceledAtReturn atomic.Bool
	h := connectors.HandlerFunc(func(hctx context.Context, req connectors.Request) (connectors.Result, error) {
		close(started)
		select {
		case <-finish:
		case <-hctx.Done():
		}
		canceledAtReturn.Store(hctx.Err() != nil)
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	cfg := config(brokers, nil)
	cfg.ShutdownGrace = testTimeout
	run := runInBackground(t, cfg, h)
	produce(ctx, t, brokers, commandMessage(t, cmd))
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler was never called")
	}

	run.cancel()
	close(finish)
	if err := run.wait(ctx, t); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
	if canceledAtReturn.Load() {
		t.Errorf("the handler's context was canceled within the grace period")
	}
	got := confirmationsByCommand(t, readAll(ctx, t, brokers, cluster, wire.ConfirmationsTopic))
	if c := got[cmd.CommandID]; len(c) != 1 || c[0].Outcome != wire.OutcomeErased {
		t.Errorf("confirmations of the in-flight command = %+v, want one, erased", c)
	}
	if n := committed(cluster, connectors.GroupPrefix+system, topic); n != 1 {
		t.Errorf("committed offsets sum to %d, want 1: the finished command is committed at shutdown", n)
	}
}

// TestRunShutdownAbandonsAfterGrace puts a quick command on partition 0 and
// a command whose handler never finishes on partition 1, and cancels Run
// once the first is handled. After the grace, the second is abandoned: only
// the first is confirmed and committed, and a new Run gets the second again.
func TestRunShutdownAbandonsAfterGrace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	quick, stuck := commandFor(), commandFor()
	stuckStarted := make(chan struct{})
	var stuckSawCancel atomic.Bool
	var quickDone atomic.Bool
	first := connectors.HandlerFunc(func(hctx context.Context, req connectors.Request) (connectors.Result, error) {
		if req.CommandID == quick.CommandID {
			quickDone.Store(true)
			return connectors.Result{Outcome: wire.OutcomeNotFound}, nil
		}
		close(stuckStarted)
		<-hctx.Done() // a handler that honours its context, and would never finish otherwise
		stuckSawCancel.Store(true)
		return connectors.Result{}, hctx.Err()
	})
	cfg := config(brokers, nil)
	cfg.ShutdownGrace = 50 * time.Millisecond
	run := runInBackground(t, cfg, first)
	// One after the other: the quick command is done before the stuck one
	// arrives, however the consumer's fetches group them.
	partitions := map[string]int{quick.RequestID: 0, stuck.RequestID: 1}
	produceToPartitions(ctx, t, brokers, partitions, commandMessage(t, quick))
	await(ctx, t, "the quick command handled", quickDone.Load)
	produceToPartitions(ctx, t, brokers, partitions, commandMessage(t, stuck))
	select {
	case <-stuckStarted:
	case <-ctx.Done():
		t.Fatal("the stuck command's handler was never called")
	}

	run.cancel()
	if err := run.wait(ctx, t); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
	if !stuckSawCancel.Load() {
		t.Errorf("the stuck handler's context was not canceled after the grace")
	}
	group := connectors.GroupPrefix + system
	commits := cluster.GroupInfo(group).Commits[topic]
	if commits[0].Offset != 1 {
		t.Errorf("partition 0 committed at %d, want 1: the finished command is committed", commits[0].Offset)
	}
	if commits[1].Offset != 0 {
		t.Errorf("partition 1 committed at %d, want nothing: the abandoned command is not", commits[1].Offset)
	}
	got := confirmationsByCommand(t, readAll(ctx, t, brokers, cluster, wire.ConfirmationsTopic))
	if len(got[quick.CommandID]) != 1 || len(got[stuck.CommandID]) != 0 {
		t.Errorf("confirmed quick %d times and stuck %d times, want 1 and 0", len(got[quick.CommandID]), len(got[stuck.CommandID]))
	}

	// The next consumer of the group gets the abandoned command.
	second := newRecorder(nil)
	start(t, config(brokers, nil), second)
	newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, stuck.CommandID)
	awaitCommitted(ctx, t, cluster, group, topic)
	if n := second.count(stuck.CommandID); n != 1 {
		t.Errorf("the next consumer handled the abandoned command %d times, want 1", n)
	}
	if n := second.count(quick.CommandID); n != 0 {
		t.Errorf("the next consumer handled the committed command %d times, want 0", n)
	}
}

// TestRunShutdownAbandonsRetryWait cancels Run while it waits to retry a
// failed handler: the command is abandoned at once rather than retried or
// confirmed, and is not committed.
func TestRunShutdownAbandonsRetryWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	h := newRecorder(func(connectors.Request) (connectors.Result, error) {
		return connectors.Result{}, errors.New("database is restarting")
	})
	obs := newObserver()
	cfg := config(brokers, nil)
	cfg.Observer = obs
	// The wait is random up to an hour, so it is under way when Run is canceled.
	cfg.Retry = connectors.RetryPolicy{MaxAttempts: 3, Initial: time.Hour, Max: time.Hour}
	cfg.ShutdownGrace = time.Hour // the wait must not use the grace meant for calls in flight
	run := runInBackground(t, cfg, h)
	cmd := commandFor()
	produce(ctx, t, brokers, commandMessage(t, cmd))
	await(ctx, t, "a retry scheduled", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.retried == 1
	})

	run.cancel()
	if err := run.wait(ctx, t); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
	if n := h.count(cmd.CommandID); n != 1 {
		t.Errorf("handler called %d times, want 1: shutdown ends the wait for a retry", n)
	}
	if n := produced(cluster, wire.ConfirmationsTopic); n != 0 {
		t.Errorf("%d confirmations published, want none for an abandoned command", n)
	}
	if n := committed(cluster, connectors.GroupPrefix+system, topic); n != 0 {
		t.Errorf("committed offsets sum to %d, want 0", n)
	}
}

// TestRunShutdownLeavesHandlerThatIgnoresContext: a handler that never
// returns, even once its context is canceled, cannot hold Run forever. Run
// returns nil after the grace and the drain deadline, with the command
// neither confirmed nor committed.
func TestRunShutdownLeavesHandlerThatIgnoresContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	started, unblock := make(chan struct{}), make(chan struct{})
	defer close(unblock) // lets the stuck goroutine end with the test
	h := connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		close(started)
		<-unblock
		return connectors.Result{Outcome: wire.OutcomeErased}, nil
	})
	logs := &syncBuffer{}
	cfg := config(brokers, logs)
	cfg.ShutdownGrace = -1
	run := runInBackground(t, cfg, h)
	produce(ctx, t, brokers, commandMessage(t, commandFor()))
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler was never called")
	}

	run.cancel()
	if err := run.wait(ctx, t); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
	if !strings.Contains(logs.String(), "ignore their context") {
		t.Errorf("Run did not log that it left a handler running; logs:\n%s", logs)
	}
	if n := produced(cluster, wire.ConfirmationsTopic); n != 0 {
		t.Errorf("%d confirmations published, want none", n)
	}
	if n := committed(cluster, connectors.GroupPrefix+system, topic); n != 0 {
		t.Errorf("committed offsets sum to %d, want 0", n)
	}
}
