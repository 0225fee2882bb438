package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/relay"
)

// Names of the baselines on the Temporal server and the broker. They stay
// apart from Lethe's own, so a baseline never touches Lethe's state.
const (
	baselineQueue     = "lethe-bench-baseline"
	emptyWorkflowName = "LetheBenchEmpty"
	naiveWorkflowName = "LetheBenchNaive"
	naiveSignal       = "reply"
)

// Each fan-out gets topics and consumer groups of its own. Had K=5 reused
// the groups K=1 had just left, a rebalance could hold a message back for
// as long as a session timeout, in the middle of a measurement: it once
// stalled a naive round for 19 s.
func naiveTopic(k, i int) string { return fmt.Sprintf("lethe.bench.naive.k%d.%02d", k, i) }
func naiveReplies(k int) string  { return fmt.Sprintf("lethe.bench.naive.k%d.replies", k) }
func naiveGroup(k, i int) string { return fmt.Sprintf("lethe-bench-naive-k%d-%02d", k, i) }
func rawRequests(k int) string   { return fmt.Sprintf("lethe.bench.raw.k%d.requests", k) }
func rawReplies(k int) string    { return fmt.Sprintf("lethe.bench.raw.k%d.replies", k) }

// baselineWorker hosts the baseline workflows, with the erasure worker's
// options (roles.WorkerOptions), on the client Lethe's worker uses.
type baselineWorker struct {
	w worker.Worker
}

func startBaselineWorker(c client.Client, writer *kafka.Writer) (*baselineWorker, error) {
	w := worker.New(c, baselineQueue, roles.WorkerOptions(roles.Failover{}))
	w.RegisterWorkflowWithOptions(emptyWorkflow, workflow.RegisterOptions{Name: emptyWorkflowName})
	w.RegisterWorkflowWithOptions(naiveWorkflow, workflow.RegisterOptions{Name: naiveWorkflowName})
	w.RegisterActivity(&naiveActivities{writer: writer})
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start baseline worker: %w", err)
	}
	return &baselineWorker{w: w}, nil
}

func (b *baselineWorker) stop() { b.w.Stop() }

// emptyWorkflow is baseline (a): the least a workflow can cost, one start
// and one workflow task.
func emptyWorkflow(workflow.Context) error { return nil }

// naiveMessage is what the naive design sends to a system and gets back.
type naiveMessage struct {
	WorkflowID string `json:"workflow_id"`
	K          int    `json:"k"`
	System     int    `json:"system"`
}

// naiveWorkflow is the obvious design PERFORMANCE.md sets Lethe against:
// one activity per system, each publishing that system's command to Kafka,
// then one signal per confirmation until all have arrived. It keeps no
// ledger, which Lethe does, and so flatters the baseline.
func naiveWorkflow(ctx workflow.Context, systems int) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	var a *naiveActivities
	futures := make([]workflow.Future, systems)
	for i := range futures {
		futures[i] = workflow.ExecuteActivity(ctx, a.Publish, naiveMessage{WorkflowID: id, K: systems, System: i})
	}
	for _, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	ch := workflow.GetSignalChannel(ctx, naiveSignal)
	for range systems {
		ch.Receive(ctx, nil)
	}
	return nil
}

// naiveActivities publish the naive design's commands.
type naiveActivities struct {
	writer *kafka.Writer
}

// Publish writes one command to its system's topic, acknowledged by every
// in-sync replica, with Lethe's own writer settings.
func (a *naiveActivities) Publish(ctx context.Context, m naiveMessage) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return a.writer.WriteMessages(ctx, kafka.Message{Topic: naiveTopic(m.K, m.System), Key: []byte(m.WorkflowID), Value: v})
}

// nextID is a workflow ID or message key unique to this run.
func (b *bencher) nextID(kind string) string {
	return fmt.Sprintf("lethe-bench-%s-%s-%d", kind, b.runID, b.seq.Add(1))
}

// emptyOp is baseline (a): an empty workflow started and awaited through
// the client Lethe uses.
func (b *bencher) emptyOp(ctx context.Context) error {
	return b.execute(ctx, emptyWorkflowName, "empty")
}

// naiveOp runs one naive workflow at fan-out k.
func (b *bencher) naiveOp(k int) func(ctx context.Context) error {
	return func(ctx context.Context) error { return b.execute(ctx, naiveWorkflowName, "naive", k) }
}

// execute starts a baseline workflow and waits for its result. A start
// an overloaded server refuses or times out is made again under the same
// workflow ID, as Lethe's API does, so that a retry never runs it twice.
func (b *bencher) execute(ctx context.Context, name, kind string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	opts := client.StartWorkflowOptions{
		ID:                       b.nextID(kind),
		TaskQueue:                baselineQueue,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}
	err := retry(ctx, transientTemporal, func(ctx context.Context) error {
		_, err := b.st.temporal.ExecuteWorkflow(ctx, opts, name, args...)
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			// An earlier attempt started it, and it has already finished.
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return b.st.temporal.GetWorkflow(ctx, opts.ID, "").Get(ctx, nil)
}

// transientTemporal reports whether a Temporal call may succeed if made
// again: the server was unavailable, overloaded, or did not answer in time.
func transientTemporal(err error) bool {
	var (
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		exhausted   *serviceerror.ResourceExhausted
	)
	return errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &exhausted) ||
		errors.Is(err, context.DeadlineExceeded)
}

// startNaive starts the Kafka side of the naive design at fan-out k: one
// consumer per system that replies to each command (batched like the
// SDK), and a signaller that reads the replies (batched like Lethe's relay)
// and signals each one to its workflow.
func (b *bencher) startNaive(ctx context.Context, g *group, k int) error {
	topics := []string{naiveReplies(k)}
	for i := range k {
		topics = append(topics, naiveTopic(k, i))
	}
	if err := kafkax.EnsureTopics(ctx, b.st.brokers, topicPartitions, topics...); err != nil {
		return err
	}
	for i := range k {
		g.run(fmt.Sprintf("naive consumer %02d", i), func(ctx context.Context) error {
			return b.echo(ctx, naiveGroup(k, i), naiveTopic(k, i), naiveReplies(k))
		})
	}
	g.run("naive signaller", func(ctx context.Context) error { return b.signaller(ctx, k) })
	return nil
}

// echo answers every message of topic on replies, in batches: fetch, write
// the replies acknowledged, commit, as the connector SDK does. It returns
// nil once ctx ends.
func (b *bencher) echo(ctx context.Context, group, topic, replies string) error {
	r := kafkax.NewReader(b.st.brokers, group, topic, b.cfg.Logger)
	defer r.Close()
	return kafkax.Consume(ctx, r, connectors.DefaultBatchSize, connectors.DefaultBatchWait, b.cfg.Logger,
		func(ctx context.Context, batch []kafka.Message) error {
			out := make([]kafka.Message, len(batch))
			for i, m := range batch {
				out[i] = kafka.Message{Topic: replies, Key: m.Key, Value: m.Value}
			}
			return kafkax.WriteAll(ctx, b.writer, b.cfg.Logger, out...)
		})
}

// signaller reads the naive design's replies in batches the size of the
// relay's and sends each as its own signal, as many at once as the relay.
func (b *bencher) signaller(ctx context.Context, k int) error {
	r := kafkax.NewReader(b.st.brokers, fmt.Sprintf("lethe-bench-naive-k%d-signaller", k), naiveReplies(k), b.cfg.Logger)
	defer r.Close()
	return kafkax.Consume(ctx, r, relay.DefaultBatchSize, relay.DefaultBatchWait, b.cfg.Logger,
		func(ctx context.Context, batch []kafka.Message) error {
			var g errgroup.Group
			g.SetLimit(relay.DefaultConcurrency)
			for _, m := range batch {
				var msg naiveMessage
				if err := json.Unmarshal(m.Value, &msg); err != nil {
					return fmt.Errorf("naive reply: %w", err)
				}
				g.Go(func() error {
					// Retried like the relay's signals, so that a busy
					// server delays the baseline rather than ends it.
					return kafkax.Retry(ctx, b.cfg.Logger, "signal naive workflow", func(ctx context.Context) error {
						err := b.st.temporal.SignalWorkflow(ctx, msg.WorkflowID, "", naiveSignal, nil)
						var notFound *serviceerror.NotFound
						if errors.As(err, &notFound) {
							// A redelivered reply of a workflow that has finished.
							return nil
						}
						return err
					})
				})
			}
			return g.Wait()
		})
}

// rawPayload is the size of a typical command on the wire.
var rawPayload = []byte(`{"schema":"erasure.command.v1","command_id":"0b5c0000-0000-4000-8000-000000000000",` +
	`"request_id":"6f1c0000-0000-4000-8000-000000000000","system":"bench-00","attempt":1,` +
	`"identifiers":[{"type":"user_id","value":"bench-0000000000"}],"issued_at":"2026-11-25T10:00:00Z",` +
	`"confirm_by":"2026-11-28T10:00:00Z","dry_run":false}`)

// startRawKafka starts baseline (b), round trips of kafka-go alone through
// the same broker, and returns one round trip. The caller produces a
// request with Lethe's writer; an echo consumer fetches it, produces the
// reply and commits, in batches like the SDK; the caller's reader hands the
// reply to the caller waiting for it.
func (b *bencher) startRawKafka(ctx context.Context, g *group, k int) (func(ctx context.Context) error, error) {
	requests, replies := rawRequests(k), rawReplies(k)
	if err := kafkax.EnsureTopics(ctx, b.st.brokers, topicPartitions, requests, replies); err != nil {
		return nil, err
	}
	// A group of its own, unknown to any earlier run against the same
	// brokers, so that no member of theirs lingers in it.
	group, err := randomName(fmt.Sprintf("lethe-bench-raw-k%d-client-", k))
	if err != nil {
		return nil, err
	}
	g.run("raw Kafka echo", func(ctx context.Context) error {
		return b.echo(ctx, fmt.Sprintf("lethe-bench-raw-k%d-echo", k), requests, replies)
	})
	var waiters sync.Map // key → chan struct{}
	g.run("raw Kafka replies", func(ctx context.Context) error {
		r := kafkax.NewReader(b.st.brokers, group, replies, b.cfg.Logger)
		defer r.Close()
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("read replies: %w", err)
			}
			if ch, ok := waiters.LoadAndDelete(string(m.Key)); ok {
				close(ch.(chan struct{}))
			}
		}
	})
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
		key := b.nextID("raw")
		done := make(chan struct{})
		waiters.Store(key, done)
		defer waiters.Delete(key)
		if err := b.writer.WriteMessages(ctx, kafka.Message{Topic: requests, Key: []byte(key), Value: rawPayload}); err != nil {
			return err
		}
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("no reply: %w", ctx.Err())
		}
	}, nil
}
