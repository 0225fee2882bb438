package connectors

// The Kafka plumbing Run stands on. Lethe's own processes (through
// internal/kafkax) use exactly the same code, so that both ends of the wire
// create topics, write, read, dead-letter and retry alike; the clients
// themselves and their security live in internal/kafkasec.
// A service needs only Run; these are for tools and tests that speak the
// wire directly.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/wire"
)

// DefaultPartitions is how many partitions a topic gets when Lethe or the SDK
// has to create it. Several partitions let several replicas of a consumer
// share the load, while one request's messages stay ordered on one partition.
const DefaultPartitions = 6

// validTopic reports whether t is a legal Kafka topic name.
func validTopic(t string) bool { return kafkasec.ValidTopic(t) }

// NewWriter returns the writer Lethe and the SDK use for commands,
// confirmations and dead letters. It names no topic, so each message carries
// its own; it waits for every in-sync replica (a confirmation acknowledged by
// one broker alone could be lost, and the offset behind it is committed next);
// it hashes the key like Kafka's Java client so that one request's messages
// keep their order; it flushes after a few milliseconds rather than
// kafka-go's default second; and it never creates topics by accident. Its
// connections are plaintext; Run secures its own with Config.TLS and
// Config.SASL.
func NewWriter(brokers []string) *kafka.Writer {
	return kafkasec.NewWriter(brokers, kafkasec.Security{})
}

// NewReader returns a consumer-group reader of topic as Lethe and the SDK
// use it: offsets are committed only by an explicit, synchronous
// CommitMessages (never on a timer, so nothing is committed before its effect
// is durable), a new group starts at the oldest message so commands sent
// before a service first started are not lost, and fetches idle for at most
// a second so that closing the reader is prompt, and the group's timeouts
// are DefaultSessionTimeout, DefaultHeartbeatInterval and
// DefaultRebalanceTimeout. kafka-go's own error messages go to log at
// warning level; they describe connections and offsets, never message
// contents.
func NewReader(brokers []string, groupID, topic string, log *slog.Logger) *kafka.Reader {
	return kafkasec.NewReader(brokers, groupID, topic, log, kafkasec.Security{}, kafkasec.GroupTimeouts{}, nil)
}

// EnsureTopics creates those of topics that do not exist yet, with the given
// number of partitions, and returns once the cluster reports them all. It is
// idempotent: existing topics are left as they are (their partition count is
// never changed), and a topic created concurrently by someone else is fine.
// A caller without the right to create topics succeeds when they exist
// already. The replication factor is the number of brokers, capped at three.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	return kafkasec.EnsureTopics(ctx, brokers, kafkasec.Security{}, partitions, topics...)
}

// maxDeadLetterValue bounds the original value a dead letter keeps. A larger
// value, with the headers added, could exceed what the writer or the broker
// accepts, and the dead letter would then block its partition forever.
const maxDeadLetterValue = 512 << 10

// DeadLetter returns the message that carries m to its topic's dead-letter
// topic: the original key, value and headers, plus the wire.HeaderDLQReason
// header saying why it was rejected (an older reason header, left by an
// earlier dead-lettering, is replaced). A value over 512 KiB is dropped and
// the reason says so. reason must never contain identifier values; the
// errors of package wire do not.
func DeadLetter(m kafka.Message, reason string) kafka.Message {
	value := m.Value
	if len(value) > maxDeadLetterValue {
		reason = fmt.Sprintf("%s (original value of %d bytes dropped)", reason, len(value))
		value = nil
	}
	headers := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h.Key != wire.HeaderDLQReason {
			headers = append(headers, h)
		}
	}
	headers = append(headers, kafka.Header{Key: wire.HeaderDLQReason, Value: []byte(reason)})
	return kafka.Message{Topic: wire.DLQTopic(m.Topic), Key: m.Key, Value: value, Headers: headers}
}

// Header returns the value of the first header of m named key, and whether
// there was one.
func Header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Consume is the at-least-once loop both ends of the wire run: fetch a
// batch from r (up to size messages, waiting at most wait for more after the
// first), give it to handle, and commit its offsets only once handle has
// returned nil. handle must have made the batch's effects durable by then,
// and should fail only when ctx has ended. Fetching and committing are
// retried (see Retry) rather than abandoned: skipping would lose messages,
// giving up would turn a broker outage into a crash loop. Consume returns nil
// once ctx ends (committing a batch already handled first), or handle's error
// if handle fails while ctx is still live.
//
// Batches are where a consumer's throughput comes from: one acknowledged
// write and one commit serve the whole batch, and wait bounds what the first
// message of a quiet period pays for it.
func Consume(ctx context.Context, r *kafka.Reader, size int, wait time.Duration, log *slog.Logger,
	handle func(ctx context.Context, batch []kafka.Message) error) error {
	for {
		var batch []kafka.Message
		if err := Retry(ctx, log, "fetch", func(ctx context.Context) error {
			var err error
			batch, err = fetchBatch(ctx, r, size, wait)
			return err
		}); err != nil {
			return nil
		}
		if err := handle(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := Retry(ctx, log, "commit offsets", func(ctx context.Context) error {
			return r.CommitMessages(ctx, batch...)
		}); err != nil {
			// ctx ended after the batch was handled: one last try, so that a
			// clean shutdown does not hand the batch to the next consumer.
			finalCommit(ctx, r, log, batch)
			return nil
		}
	}
}

// finalCommitTimeout bounds the commit Consume still attempts after its
// context ended.
const finalCommitTimeout = 5 * time.Second

func finalCommit(ctx context.Context, r *kafka.Reader, log *slog.Logger, batch []kafka.Message) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
	defer cancel()
	if err := r.CommitMessages(ctx, batch...); err != nil {
		log.Warn("commit offsets at shutdown; the batch will be delivered again", "error", err.Error())
	}
}

// fetchBatch blocks until r has a message, then keeps taking messages until
// it holds size of them or wait has passed since the first. An error after
// the first message ends the batch early and is left for the next call.
func fetchBatch(ctx context.Context, r *kafka.Reader, size int, wait time.Duration) ([]kafka.Message, error) {
	first, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafka.Message{first}
	if size <= 1 {
		return batch, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for len(batch) < size {
		m, err := r.FetchMessage(wctx)
		if err != nil {
			break
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// Backoff bounds of Retry.
const (
	retryMinDelay = 100 * time.Millisecond
	retryMaxDelay = 10 * time.Second
)

// Retry calls fn until it succeeds or ctx ends, waiting between attempts
// from 100ms doubling up to 10s. It returns nil on success and ctx's error
// otherwise: a consumer that must neither skip a message nor crash-loop on a
// broker or service outage waits it out here. Each failure is logged at
// warning level with op and the error's text, so fn must return errors that
// carry no identifier values.
func Retry(ctx context.Context, log *slog.Logger, op string, fn func(context.Context) error) error {
	delay := retryMinDelay
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("retrying", "op", op, "attempt", attempt, "delay", delay, "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, retryMaxDelay)
	}
}

// WriteAll writes msgs through w, retrying (see Retry) until all of them are
// acknowledged or ctx ends; after a partial failure only the messages that
// failed are written again. It returns nil or ctx's error.
func WriteAll(ctx context.Context, w *kafka.Writer, log *slog.Logger, msgs ...kafka.Message) error {
	pending := msgs
	return Retry(ctx, log, "write to kafka", func(ctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		err := w.WriteMessages(ctx, pending...)
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			var failed []kafka.Message
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, pending[i])
				}
			}
			pending = failed
		}
		return err
	})
}
