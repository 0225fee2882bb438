package connectors_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// slowHandler defers the commands of the request slowRequest and answers
// the others at once. Its Resume blocks until release is closed, then
// answers erased; never, when it was made never to finish.
type slowHandler struct {
	slowRequest string
	release     chan struct{}
	never       bool
	erases      sync.Map // command id → *atomic.Int32
	resumes     atomic.Int32
	finish      atomic.Pointer[connectors.FinishFunc]
}

func (h *slowHandler) Erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	n, _ := h.erases.LoadOrStore(req.CommandID, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	if req.RequestID != h.slowRequest {
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 1}, nil
	}
	if !connectors.CanDefer(ctx) {
		return connectors.Result{}, errors.New("cannot defer")
	}
	return connectors.Later([]byte(`{"job":"j-1"}`), time.Now()), nil
}

func (h *slowHandler) Resume(ctx context.Context, d connectors.Deferred) (connectors.Result, error) {
	h.resumes.Add(1)
	if string(d.State) != `{"job":"j-1"}` {
		return connectors.Result{}, connectors.Permanent(errors.New("state lost"))
	}
	if h.never {
		return connectors.Later(d.State, time.Now().Add(20*time.Millisecond)), nil
	}
	select {
	case <-h.release:
		return connectors.Result{Outcome: wire.OutcomeErased, Records: 7}, nil
	case <-ctx.Done():
		return connectors.Result{}, ctx.Err()
	}
}

func (h *slowHandler) AttachFinish(f connectors.FinishFunc) { h.finish.Store(&f) }

func (h *slowHandler) erased(commandID string) int32 {
	n, ok := h.erases.Load(commandID)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

var _ connectors.Finisher = (*slowHandler)(nil)

// TestRunDeferredCommandDoesNotBlockOthers: a command whose handler
// deferred its work is committed at once, and a second command on the same
// partition, one at a time, is confirmed while the first still waits; the
// first is confirmed once its Resume answers, and forgotten.
func TestRunDeferredCommandDoesNotBlockOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	slow, fast := newCommand(uuid.NewString()), newCommand(uuid.NewString())
	h := &slowHandler{slowRequest: slow.RequestID, release: make(chan struct{})}
	cfg := config(brokers, nil)
	cfg.Concurrency, cfg.BatchSize, cfg.DeferredCheck = 1, 1, 10*time.Millisecond
	start(t, cfg, h)

	produceToPartitions(ctx, t, brokers, map[string]int{slow.RequestID: 0, fast.RequestID: 0},
		commandMessage(t, slow), commandMessage(t, fast))
	confs := newConsumer(t, brokers, wire.ConfirmationsTopic)
	if got := confs.confirmationsUntil(ctx, t, fast.CommandID); len(got) != 1 {
		t.Fatalf("confirmations before the fast command's: %+v, want only its own", got)
	}
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	await(ctx, t, "a resume of the slow command", func() bool { return h.resumes.Load() > 0 })

	close(h.release)
	got := confs.confirmationsUntil(ctx, t, slow.CommandID)
	if c := got[len(got)-1]; c.Outcome != wire.OutcomeErased || c.Records != 7 || c.RequestID != slow.RequestID {
		t.Errorf("slow command confirmed %+v, want erased with 7 records", c)
	}
	if n := h.erased(slow.CommandID); n != 1 {
		t.Errorf("the slow command's Erase ran %d times, want once", n)
	}
	// Delivered again, it is answered from the store: Erase is not called.
	produce(ctx, t, brokers, commandMessage(t, slow))
	if got := confs.confirmationsUntil(ctx, t, slow.CommandID); got[len(got)-1].Records != 7 {
		t.Errorf("redelivered slow command confirmed %+v, want the recorded confirmation", got[len(got)-1])
	}
	if n := h.erased(slow.CommandID); n != 1 {
		t.Errorf("after a redelivery the slow command's Erase ran %d times, want once", n)
	}
}

// TestRunDeferredCommandTimesOutAtConfirmBy: a Resume that never finishes
// is confirmed failed and retryable once confirm_by passes.
func TestRunDeferredCommandTimesOutAtConfirmBy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	cmd := newCommand(uuid.NewString())
	cmd.ConfirmBy = time.Now().Add(300 * time.Millisecond)
	h := &slowHandler{slowRequest: cmd.RequestID, never: true}
	cfg := config(brokers, nil)
	cfg.DeferredCheck = 10 * time.Millisecond
	start(t, cfg, h)
	produce(ctx, t, brokers, commandMessage(t, cmd))
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)
	if c := got[len(got)-1]; c.Outcome != wire.OutcomeFailed || !c.Retryable || c.Detail == "" {
		t.Errorf("confirmation %+v, want failed, retryable, with a detail", c)
	}
	if time.Now().Before(cmd.ConfirmBy) {
		t.Errorf("confirmed before confirm_by")
	}
}

// TestRunFinishesDeferredCommandFromOutside: the FinishFunc Run attaches
// confirms a deferred command with the result given, answers a repeat with
// nil and an unknown command with ErrNotDeferred.
func TestRunFinishesDeferredCommandFromOutside(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	cmd := newCommand(uuid.NewString())
	h := &slowHandler{slowRequest: cmd.RequestID, release: make(chan struct{})}
	cfg := config(brokers, nil)
	cfg.DeferredCheck = time.Hour // only the outside finishes it
	start(t, cfg, h)
	produce(ctx, t, brokers, commandMessage(t, cmd))
	awaitCommitted(ctx, t, cluster, connectors.GroupPrefix+system, topic)
	finish := *h.finish.Load()
	res := connectors.Result{Outcome: wire.OutcomeNotFound}
	if err := finish(ctx, cmd.CommandID, res); err != nil {
		t.Fatalf("finish: %v", err)
	}
	got := newConsumer(t, brokers, wire.ConfirmationsTopic).confirmationsUntil(ctx, t, cmd.CommandID)
	if c := got[len(got)-1]; c.Outcome != wire.OutcomeNotFound {
		t.Errorf("confirmation %+v, want not_found, the finished result", c)
	}
	if err := finish(ctx, cmd.CommandID, res); err != nil {
		t.Errorf("finish again = %v, want nil for a repeat", err)
	}
	if err := finish(ctx, uuid.NewString(), res); !errors.Is(err, connectors.ErrNotDeferred) {
		t.Errorf("finish of an unknown command = %v, want ErrNotDeferred", err)
	}
}
