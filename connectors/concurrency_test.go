package connectors_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestRunHandlesRequestsInParallelAndEachInOrder sends one batch of six
// single-command requests and one request of three commands, with a bound
// of three handler calls at once. It checks that the bound is reached and
// never passed, that one request's commands run one at a time and in order,
// and that nothing of the batch is published or committed while one of its
// commands is still being handled.
func TestRunHandlesRequestsInParallelAndEachInOrder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	const bound = 3

	ordered := uuid.NewString()
	var msgs []kafka.Message
	var sequence []string // the ordered request's command ids, in order
	var all []wire.Command
	for i := range 9 {
		var cmd wire.Command
		if i%3 == 0 {
			cmd = newCommand(ordered)
			sequence = append(sequence, cmd.CommandID)
		} else {
			cmd = commandFor()
		}
		all = append(all, cmd)
		msgs = append(msgs, commandMessage(t, cmd))
	}
	held := all[8] // handled last: held until the rest is done

	var (
		mu          sync.Mutex
		inFlight    int
		maxInFlight int
		perRequest  = make(map[string]int)
		overlapped  bool
		order       []string
		finished    int
	)
	reached := make(chan struct{})
	release := make(chan struct{})
	var reachedOnce sync.Once
	h := connectors.HandlerFunc(func(hctx context.Context, req connectors.Request) (connectors.Result, error) {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		perRequest[req.RequestID]++
		if perRequest[req.RequestID] > 1 {
			overlapped = true
		}
		if req.RequestID == ordered {
			order = append(order, req.CommandID)
		}
		if inFlight == bound {
			reachedOnce.Do(func() { close(reached) })
		}
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight--
			perRequest[req.RequestID]--
			finished++
			mu.Unlock()
		}()
		// Wait until the bound is reached once: a handler that ran alone
		// would wait here until the test's deadline.
		select {
		case <-reached:
		case <-ctx.Done():
			return connectors.Result{}, ctx.Err()
		}
		if req.CommandID == held.CommandID {
			select {
			case <-release:
			case <-ctx.Done():
				return connectors.Result{}, ctx.Err()
			}
		}
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	})
	cfg := config(brokers, nil)
	cfg.Concurrency = bound
	cfg.BatchSize = len(msgs)   // the batch is complete once all nine are in,
	cfg.BatchWait = testTimeout // and not before
	start(t, cfg, h)
	produce(ctx, t, brokers, msgs...)

	await(ctx, t, "every command but the held one handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return finished == len(msgs)-1
	})
	if n := produced(cluster, wire.ConfirmationsTopic); n != 0 {
		t.Errorf("%d confirmations published while a command of their batch is still handled, want 0", n)
	}
	if n := committed(cluster, connectors.GroupPrefix+system, topic); n != 0 {
		t.Errorf("offsets committed up to %d while a command of the batch is still handled, want none", n)
	}
	close(release)

	got := confirmationsByCommand(t, readN(ctx, t, brokers, cluster, wire.ConfirmationsTopic, len(msgs)))
	for _, cmd := range all {
		if n := len(got[cmd.CommandID]); n != 1 {
			t.Errorf("command %d confirmed %d times, want once", slicesIndex(all, cmd), n)
		}
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)

	mu.Lock()
	defer mu.Unlock()
	if maxInFlight != bound {
		t.Errorf("at most %d handler calls ran at once, want exactly the bound %d", maxInFlight, bound)
	}
	if overlapped {
		t.Errorf("two commands of one request were handled at once; want one after the other")
	}
	if fmt.Sprint(order) != fmt.Sprint(sequence) {
		t.Errorf("the request's commands were handled in order %v, want the topic's %v", order, sequence)
	}
}

func slicesIndex(cmds []wire.Command, cmd wire.Command) int {
	for i, c := range cmds {
		if c.CommandID == cmd.CommandID {
			return i
		}
	}
	return -1
}
