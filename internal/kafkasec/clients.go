package kafkasec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/segmentio/kafka-go"
)

// maxReplicationFactor is the replication factor of created topics on a
// cluster of at least that many brokers: it survives the loss of one broker
// during another's maintenance, Kafka's usual production setting.
const maxReplicationFactor = 3

// topicRe is Kafka's rule for legal topic names.
var topicRe = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ValidTopic reports whether t is a legal Kafka topic name.
func ValidTopic(t string) bool { return topicRe.MatchString(t) && t != "." && t != ".." }

// NewWriter returns the writer Lethe and the SDK use for commands,
// confirmations and dead letters, over connections secured by sec. It names
// no topic, so each message carries its own; it waits for every in-sync
// replica (a confirmation acknowledged by one broker alone could be lost,
// and the offset behind it is committed next); it hashes the key like
// Kafka's Java client so that one request's messages keep their order; it
// flushes after a few milliseconds rather than kafka-go's default second;
// and it never creates topics by accident.
func NewWriter(brokers []string, sec Security) *kafka.Writer {
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

// NewReader returns a consumer-group reader of topic over connections
// secured by sec: offsets are committed only by an explicit, synchronous
// CommitMessages (never on a timer, so nothing is committed before its
// effect is durable), a new group starts at the oldest message so commands
// sent before a service first started are not lost, and fetches idle for at
// most a second so that closing the reader is prompt. kafka-go's own error
// messages go to log at warning level; they describe connections and
// offsets, never message contents. group sets how fast the group gets over
// the loss of a member (zero fields: the defaults). tune, when not nil,
// adjusts the configuration last.
func NewReader(brokers []string, groupID, topic string, log *slog.Logger, sec Security, group GroupTimeouts, tune func(*kafka.ReaderConfig)) *kafka.Reader {
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
	group.apply(&cfg)
	if tune != nil {
		tune(&cfg)
	}
	return kafka.NewReader(cfg)
}

// EnsureTopics creates those of topics that do not exist yet, with the given
// number of partitions, over connections secured by sec, and returns once
// the cluster reports them all. It is idempotent: existing topics are left
// as they are (their partition count is never changed), and a topic created
// concurrently by someone else is fine.
//
// It first asks for the topics' metadata without allowing automatic creation,
// so a caller without the right to create topics succeeds when they exist
// already. Missing topics are created through the cluster's controller, to
// which kafka-go routes the request itself.
//
// The replication factor is the number of brokers the cluster reports,
// capped at three: a single-broker development cluster (such as the embedded
// one of `lethe dev`, which refuses a factor above its broker count) gets
// one, a production cluster gets Kafka's usual three. The factor is explicit
// rather than the broker's default (-1) because only brokers of Kafka 2.4 and
// later understand the default, and it keeps the choice visible here.
func EnsureTopics(ctx context.Context, brokers []string, sec Security, partitions int, topics ...string) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: no brokers")
	}
	if partitions < 1 {
		return fmt.Errorf("ensure topics: partitions is %d, want at least 1", partitions)
	}
	for _, t := range topics {
		if !ValidTopic(t) {
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
func missingTopics(ctx context.Context, brokers []string, sec Security, topics []string) (*kafka.MetadataResponse, []string, error) {
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
func createTopics(ctx context.Context, brokers []string, sec Security, md *kafka.MetadataResponse, partitions int, topics []string) error {
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
func awaitTopics(ctx context.Context, brokers []string, sec Security, topics []string) error {
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
