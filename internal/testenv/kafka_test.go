package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/internal/testenv"
)

func TestKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, "one", "two")
	for _, topic := range []string{"one", "two"} {
		if n := len(cluster.PartitionInfos(topic)); n != testenv.KafkaPartitions {
			t.Errorf("%s has %d partitions, want %d", topic, n, testenv.KafkaPartitions)
		}
	}

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "two", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("hello")}); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: "g", Topic: "two", StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil || string(m.Value) != "hello" {
		t.Fatalf("read = %q, %v; want hello", m.Value, err)
	}
}
