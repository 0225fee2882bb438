package testenv

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaPartitions is how many partitions the topics Kafka creates have:
// more than one, so that tests meet the interleaving of a real cluster.
const KafkaPartitions = 3

// Kafka starts an in-process Kafka-protocol broker (kfake) on a random
// loopback port, with topics created, and stops it when the test ends. It
// answers the broker addresses for kafka-go and the cluster itself, whose
// introspection (group commits, topic info) lets tests check what a consumer
// committed. The broker refuses automatic topic creation, as Lethe's
// production brokers should, so a test that forgets a topic fails.
func Kafka(t testing.TB, topics ...string) (brokers []string, cluster *kfake.Cluster) {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(KafkaPartitions)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(KafkaPartitions, topics...))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("testenv: start kfake broker: %v", err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs(), cluster
}
