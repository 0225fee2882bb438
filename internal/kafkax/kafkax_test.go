package kafkax_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/internal/testenv"
)

const testTimeout = 60 * time.Second

func TestSplitBrokers(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:9092", []string{"127.0.0.1:9092"}},
		{"a:1,b:2", []string{"a:1", "b:2"}},
		{" a:1 , ,b:2,", []string{"a:1", "b:2"}},
		{"", nil},
		{" , ", nil},
	}
	for _, tt := range tests {
		if got := kafkax.SplitBrokers(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitBrokers(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewWriter(t *testing.T) {
	w := kafkax.NewWriter([]string{"127.0.0.1:9092"})
	defer w.Close()
	if w.Topic != "" {
		t.Errorf("Topic = %q, want none so each message names its own", w.Topic)
	}
	if w.RequiredAcks != kafka.RequireAll {
		t.Errorf("RequiredAcks = %v, want RequireAll", w.RequiredAcks)
	}
	if w.Async {
		t.Errorf("Async is set; writes must be acknowledged before offsets are committed")
	}
	if w.AllowAutoTopicCreation {
		t.Errorf("AllowAutoTopicCreation is set")
	}
	if w.BatchTimeout <= 0 || w.BatchTimeout > 10*time.Millisecond {
		t.Errorf("BatchTimeout = %v, want a few milliseconds", w.BatchTimeout)
	}
	if _, ok := w.Balancer.(*kafka.Murmur2Balancer); !ok {
		t.Errorf("Balancer = %T, want a key hash", w.Balancer)
	}
}

func TestEnsureTopicsOnAThreeBrokerCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(2, "existing"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	for i := range 2 { // the second round proves it idempotent
		if err := kafkax.EnsureTopics(ctx, brokers, 4, "existing", "fresh.one", "fresh.two"); err != nil {
			t.Fatalf("round %d: %v", i+1, err)
		}
	}
	tests := []struct {
		topic      string
		partitions int
		replicas   int
	}{
		{"existing", 2, 3}, // left as it was
		{"fresh.one", 4, 3},
		{"fresh.two", 4, 3},
	}
	for _, tt := range tests {
		info := cluster.TopicInfo(tt.topic)
		if info == nil {
			t.Errorf("%s does not exist", tt.topic)
			continue
		}
		if n := len(cluster.PartitionInfos(tt.topic)); n != tt.partitions {
			t.Errorf("%s has %d partitions, want %d", tt.topic, n, tt.partitions)
		}
		if info.NumReplicas != tt.replicas {
			t.Errorf("%s has %d replicas, want %d", tt.topic, info.NumReplicas, tt.replicas)
		}
	}

	// A writer of this process sees the new topics at once.
	w := kafkax.NewWriter(brokers)
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Topic: "fresh.two", Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Errorf("write to a topic just created: %v", err)
	}
}

func TestEnsureTopicsOnOneBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t)
	if err := kafkax.EnsureTopics(ctx, brokers, kafkax.DefaultPartitions, "solo"); err != nil {
		t.Fatal(err)
	}
	if info := cluster.TopicInfo("solo"); info == nil || info.NumReplicas != 1 {
		t.Errorf("topic info = %+v, want one replica on a one-broker cluster", info)
	}
	if n := len(cluster.PartitionInfos("solo")); n != kafkax.DefaultPartitions {
		t.Errorf("solo has %d partitions, want %d", n, kafkax.DefaultPartitions)
	}
}

func TestEnsureTopicsRejectsBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, _ := testenv.Kafka(t)
	tests := []struct {
		name       string
		brokers    []string
		partitions int
		topic      string
	}{
		{"no brokers", nil, 1, "t"},
		{"no partitions", brokers, 0, "t"},
		{"bad name", brokers, 1, "no spaces"},
		{"dot", brokers, 1, ".."},
	}
	for _, tt := range tests {
		if err := kafkax.EnsureTopics(ctx, tt.brokers, tt.partitions, tt.topic); err == nil {
			t.Errorf("%s: EnsureTopics = nil, want an error", tt.name)
		}
	}
}

func TestWriterDoesNotCreateTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers, cluster := testenv.Kafka(t)
	w := kafkax.NewWriter(brokers)
	defer w.Close()
	err := w.WriteMessages(ctx, kafka.Message{Topic: "nobody.made.me", Value: []byte("v")})
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("write to a missing topic = %v, want UnknownTopicOrPartition", err)
	}
	if cluster.TopicInfo("nobody.made.me") != nil {
		t.Errorf("the writer created a topic")
	}
}
