package connectors_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// observer records what Run reports to a connectors.Observer.
type observer struct {
	mu           sync.Mutex
	handled      []handledEvent
	duplicates   int
	deadLettered map[string]int
	retried      int
	systems      map[string]bool
}

type handledEvent struct {
	outcome  wire.Outcome
	attempts int
	d        time.Duration
}

func newObserver() *observer {
	return &observer{deadLettered: make(map[string]int), systems: make(map[string]bool)}
}

func (o *observer) CommandHandled(system string, outcome wire.Outcome, attempts int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.systems[system] = true
	o.handled = append(o.handled, handledEvent{outcome, attempts, d})
}

func (o *observer) CommandDuplicate(system string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.systems[system] = true
	o.duplicates++
}

func (o *observer) CommandDeadLettered(system, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.systems[system] = true
	o.deadLettered[reason]++
}

func (o *observer) HandlerRetried(system string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.systems[system] = true
	o.retried++
}

var _ connectors.Observer = (*observer)(nil)

// await polls cond until it holds, failing the test if ctx ends first.
func await(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// produced is how many messages topic holds.
func produced(cluster *kfake.Cluster, topic string) int64 {
	var n int64
	for _, p := range cluster.PartitionInfos(topic) {
		n += p.HighWatermark
	}
	return n
}

// committed is the sum of the offsets group committed on topic.
func committed(cluster *kfake.Cluster, group, topic string) int64 {
	info := cluster.GroupInfo(group)
	if info == nil {
		return 0
	}
	var n int64
	for _, c := range info.Commits[topic] {
		n += c.Offset
	}
	return n
}

// readAll reads every message topic holds now, from its start.
func readAll(ctx context.Context, t *testing.T, brokers []string, cluster *kfake.Cluster, topic string) []kafka.Message {
	t.Helper()
	want := produced(cluster, topic)
	c := newConsumer(t, brokers, topic)
	var out []kafka.Message
	for int64(len(out)) < want {
		out = append(out, c.next(ctx, t))
	}
	return out
}

// readN waits until topic holds at least n messages, then reads them all.
func readN(ctx context.Context, t *testing.T, brokers []string, cluster *kfake.Cluster, topic string, n int) []kafka.Message {
	t.Helper()
	await(ctx, t, fmt.Sprintf("%d messages on %s", n, topic), func() bool { return produced(cluster, topic) >= int64(n) })
	return readAll(ctx, t, brokers, cluster, topic)
}

// confirmationsByCommand decodes confirmation messages, by command id.
func confirmationsByCommand(t *testing.T, msgs []kafka.Message) map[string][]wire.Confirmation {
	t.Helper()
	out := make(map[string][]wire.Confirmation)
	for _, m := range msgs {
		c, err := wire.DecodeConfirmation(m.Value)
		if err != nil {
			t.Fatalf("decode confirmation: %v", err)
		}
		out[c.CommandID] = append(out[c.CommandID], c)
	}
	return out
}

// running is a Run in the background that a test stops itself.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func runInBackground(t *testing.T, cfg connectors.Config, h connectors.Handler) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- connectors.Run(ctx, cfg, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
	return r
}

// wait returns Run's error, failing the test if it does not return before
// ctx ends.
func (r *running) wait(ctx context.Context, t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-ctx.Done():
		t.Fatalf("Run did not return: %v", ctx.Err())
		return nil
	}
}

// produceToPartitions writes each message to the partition given for its
// key, for tests whose assertions depend on which partition a command is on.
func produceToPartitions(ctx context.Context, t *testing.T, brokers []string, partitions map[string]int, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int {
			return partitions[string(m.Key)]
		}),
	}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// commandFor is a fresh command of a request of its own.
func commandFor() wire.Command { return newCommand(uuid.NewString()) }
