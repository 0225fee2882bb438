package connectors

// The Kafka plumbing Run stands on. It is exported because Lethe's own
// processes (through internal/kafkax) use exactly the same code, so that both
// ends of the wire create topics, write, read, dead-letter and retry alike.
// A service needs only Run; these are for tools and tests that speak the
// wire directly.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// DefaultPartitions is how many partitions a topic gets when Lethe or the SDK
// has to create it. Several partitions let several replicas of a consumer
// share the load, while one request's messages stay ordered on one partition.
const DefaultPartitions = 6

// maxReplicationFactor is the replication factor of created topics on a
// cluster of at least that many brokers: it survives the loss of one broker
// during another's maintenance, Kafka's usual production setting.
const maxReplicationFactor = 3

// topicRe is Kafka's rule for legal topic names.
var topicRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func validTopic(t string) bool { return topicRe.MatchString(t) && t != "." && t != ".." }

// NewWriter returns the writer Lethe and the SDK use for commands,
// confirmations and dead letters. It names no topic, so each message carries
// its own; it waits for every in-sync replica (a confirmation acknowledged by
// one broker alone could be lost, and the offset behind it is committed next);
// it hashes the key like Kafka's Java client so that one request's messages
// keep their order; it flushes after a few milliseconds rather than
// kafka-go's default second; and it never creates topics by accident.
func NewWriter(brokers []string) *kafka.Writer {
	return newWriter(brokers, security{})
}

func newWriter(brokers []string, sec security) *kafka.Writer {
	w := &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		AllowAutoTopicCreation: false,
	}
	if tr := sec.transport(); tr != nil {
		w.Transport = tr
	}
	return w
}

// NewReader returns a consumer-group reader of topic as Lethe and the SDK
// use it: offsets are committed only by an explicit, synchronous
// CommitMessages (never on a timer, so nothing is committed before its effect
// is durable), a new group starts at the oldest message so commands sent
// before a service first started are not lost, and fetches idle for at most
// a second so that closing the reader is prompt. kafka-go's own error
// messages go to log at warning level; they describe connections and
// offsets, never message contents.
func NewReader(brokers []string, groupID, topic string, log *slog.Logger) *kafka.Reader {
	return newReader(brokers, groupID, topic, log, security{}, nil)
}

// newReader is NewReader over connections secured by sec; tune, when not
// nil, adjusts the configuration last (tests shorten the group's timeouts
// with it).
func newReader(brokers []string, groupID, topic string, log *slog.Logger, sec security, tune func(*kafka.ReaderConfig)) *kafka.Reader {
	cfg := kafka.ReaderConfig{
		Dialer:         sec.dialer(),
		Brokers:        brokers,
		GroupID:        groupID,
		Topic:          topic,
		MinBytes:       1,
		MaxBytes:       10 << 20,
		MaxWait:        time.Second,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka reader: "+fmt.Sprintf(msg, args...), "topic", topic)
		}),
	}
	if tune != nil {
		tune(&cfg)
	}
	return kafka.NewReader(cfg)
}

// EnsureTopics creates those of topics that do not exist yet, with the given
// number of partitions, and returns once the cluster reports them all. It is
// idempotent: existing topics are left as they are (their partition count is
// never changed), and a topic created concurrently by someone else is fine.
//
// It first asks for the topics' metadata without allowing automatic creation,
// so a caller without the right to create topics succeeds when they exist
// already. Missing topics are created through the cluster's controller, to
// which kafka-go routes the request itself.
//
// The replication factor is the number of brokers the cluster reports,
// capped at three: a single-broker development cluster (such as the embedded
// one of `lethe dev`, which refuses a factor above its broker count) gets
// one, a production cluster gets Kafka's usual three. The factor is explicit rather
// than the broker's default (-1) because only brokers of Kafka 2.4 and later
// understand the default, and it keeps the choice visible here.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	return ensureTopics(ctx, brokers, security{}, partitions, topics...)
}

// ensureTopics is EnsureTopics over connections secured by sec. Its
// creation goes through sec's shared transport, the one the writers of the
// same security use, for the reason createTopics gives.
func ensureTopics(ctx context.Context, brokers []string, sec security, partitions int, topics ...string) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: no brokers")
	}
	if partitions < 1 {
		return fmt.Errorf("ensure topics: partitions is %d, want at least 1", partitions)
	}
	for _, t := range topics {
		if !validTopic(t) {
			return fmt.Errorf("ensure topics: %q is not a valid topic name", t)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	md, missing, err := missingTopics(ctx, brokers, sec, topics)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	if err := createTopics(ctx, brokers, sec, md, partitions, missing); err != nil {
		return err
	}
	return awaitTopics(ctx, brokers, sec, missing)
}

// missingTopics reads the cluster's metadata and returns the topics it does
// not know. Each call has a transport of its own: kafka-go's transports
// answer metadata requests from a cache refreshed every few seconds, which
// would hide a topic just created.
func missingTopics(ctx context.Context, brokers []string, sec security, topics []string) (*kafka.MetadataResponse, []string, error) {
	tr := &kafka.Transport{TLS: sec.tls, SASL: sec.sasl}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, nil, fmt.Errorf("ensure topics: read metadata: %w", err)
	}
	found := make(map[string]bool, len(md.Topics))
	for _, t := range md.Topics {
		switch {
		case t.Error == nil:
			found[t.Name] = true
		case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
		default:
			return nil, nil, fmt.Errorf("ensure topics: metadata of %s: %w", t.Name, t.Error)
		}
	}
	var missing []string
	for _, t := range topics {
		if !found[t] && !contains(missing, t) {
			missing = append(missing, t)
		}
	}
	return md, missing, nil
}

// createTopics sends the creation to the controller. It goes through
// kafka-go's shared default transport, the one NewWriter's writers use, on
// purpose: the transport refreshes its cached metadata when it sees topics
// created, so this process's writers can use them at once instead of failing
// with an unknown topic until the cache expires (kafka-go's Conn.CreateTopics
// would leave the cache stale). A secured connection goes through sec's
// transport instead, which its writers share for the same reason.
func createTopics(ctx context.Context, brokers []string, sec security, md *kafka.MetadataResponse, partitions int, topics []string) error {
	rf := min(len(md.Brokers), maxReplicationFactor)
	if rf < 1 {
		rf = 1
	}
	configs := make([]kafka.TopicConfig, len(topics))
	for i, t := range topics {
		configs[i] = kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: rf}
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	if tr := sec.transport(); tr != nil {
		client.Transport = tr
	}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: configs})
	if err != nil {
		return fmt.Errorf("ensure topics: create: %w", err)
	}
	for _, t := range topics {
		if err := res.Errors[t]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("ensure topics: create %s: %w", t, err)
		}
	}
	return nil
}

// awaitTopics waits until the cluster's metadata shows every topic: Kafka
// creates topics asynchronously, and a writer that looked too early would
// fail with an unknown topic.
func awaitTopics(ctx context.Context, brokers []string, sec security, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, missing, err := missingTopics(ctx, brokers, sec, topics)
		if err == nil && len(missing) == 0 {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = fmt.Errorf("%d of them not visible yet", len(missing))
			}
			return fmt.Errorf("ensure topics: await creation: %w (%w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
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
