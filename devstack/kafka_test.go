package devstack_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/devstack"
)

func startKafka(t *testing.T, cfg devstack.KafkaConfig) *devstack.Kafka {
	t.Helper()
	k, err := devstack.StartKafka(cfg)
	if err != nil {
		t.Fatalf("StartKafka: %v", err)
	}
	t.Cleanup(k.Close)
	return k
}

func TestKafkaKeepsMessagesAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "kafka")
	const topic = "lethe.erasure.devstack-test"

	k := startKafka(t, devstack.KafkaConfig{Addr: "127.0.0.1:0", DataDir: dir, Partitions: 2})
	brokers := k.Brokers()
	admin := &kafka.Client{Addr: kafka.TCP(brokers...)}
	// -1 asks for the broker's default partition count.
	created, err := admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: -1, ReplicationFactor: -1}},
	})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := created.Errors[topic]; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	meta, err := admin.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if len(meta.Topics) != 1 || len(meta.Topics[0].Partitions) != 2 {
		t.Fatalf("topic metadata = %+v, want one topic with the configured 2 partitions", meta.Topics)
	}

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		// Partition 0, so the reader below knows where to look.
		Balancer: kafka.BalancerFunc(func(_ kafka.Message, partitions ...int) int { return partitions[0] }),
	}
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("survives")}); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	k.Close()

	k = startKafka(t, devstack.KafkaConfig{Addr: brokers[0], DataDir: dir, Partitions: 2})
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers(), Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if string(m.Key) != "k" || string(m.Value) != "survives" {
		t.Errorf("read %q=%q after restart, want k=survives", m.Key, m.Value)
	}
}

func TestKafkaDoesNotCreateTopicsImplicitly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := startKafka(t, devstack.KafkaConfig{Addr: "127.0.0.1:0"})
	conn, err := kafka.DialContext(ctx, "tcp", k.Brokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// ReadPartitions asks the broker to create a missing topic.
	if _, err := conn.ReadPartitions("no-such-topic"); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("reading a missing topic = %v, want UnknownTopicOrPartition", err)
	}
	meta, err := (&kafka.Client{Addr: kafka.TCP(k.Brokers()...)}).Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range meta.Topics {
		if tp.Name == "no-such-topic" {
			t.Error("the broker created a topic because a client asked about it")
		}
	}
}

func TestKafkaAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	k, err := devstack.StartKafka(devstack.KafkaConfig{Addr: ln.Addr().String()})
	if err == nil {
		k.Close()
		t.Fatal("StartKafka on a taken address succeeded")
	}
	if want := "kafka address " + ln.Addr().String() + " is in use"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}
