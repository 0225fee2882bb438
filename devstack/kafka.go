package devstack

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultKafkaAddress is where the embedded broker listens by default, the
// first of the contract's LETHE_KAFKA_BROKERS default.
const DefaultKafkaAddress = "127.0.0.1:9092"

// DefaultPartitions is how many partitions a topic gets when its creator
// asks for the broker's default. Three lets a demo show consumer groups
// sharing work without making one laptop juggle many partitions.
const DefaultPartitions = 3

// KafkaConfig says where the embedded Kafka-protocol broker listens and
// keeps its log.
type KafkaConfig struct {
	// Addr is the broker's host:port, DefaultKafkaAddress when empty; port 0
	// picks a free port (see Kafka.Brokers).
	Addr string
	// DataDir, when set, keeps topics, records and committed offsets on disk
	// so they survive a restart; empty keeps them in memory.
	DataDir string
	// Partitions is the default partition count of new topics,
	// DefaultPartitions when zero.
	Partitions int
}

func (c *KafkaConfig) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultKafkaAddress
	}
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
}

// Kafka is a running embedded broker: one kfake node that speaks enough of
// the Kafka protocol for kafka-go producers, consumer groups and admin calls.
type Kafka struct {
	cluster *kfake.Cluster
	brokers []string
}

// StartKafka starts the broker. Topics are never created implicitly: Lethe
// creates each one on purpose (a system's topic when it is registered), and
// a typo in a topic name must fail rather than create a topic nobody reads.
func StartKafka(cfg KafkaConfig) (*Kafka, error) {
	cfg.setDefaults()
	host, port, err := splitAddr("kafka", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if err := PortFree(cfg.Addr); err != nil {
		return nil, fmt.Errorf("kafka %w", err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake binds 127.0.0.1; listen on the host asked for instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.DefaultNumPartitions(cfg.Partitions),
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("kafka: data folder: %w", err)
		}
		// SyncWrites makes every acknowledged produce durable at once: a
		// command the orchestrator was told is written must survive a crash
		// of `lethe dev`, or the erasure would wait for a re-dispatch.
		opts = append(opts, kfake.DataDir(cfg.DataDir), kfake.SyncWrites())
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: start broker: %w", err)
	}
	return &Kafka{cluster: cluster, brokers: cluster.ListenAddrs()}, nil
}

// Brokers are the bootstrap addresses clients dial.
func (k *Kafka) Brokers() []string { return append([]string(nil), k.brokers...) }

// Cluster exposes the fake cluster for tests that inject faults or inspect
// state.
func (k *Kafka) Cluster() *kfake.Cluster { return k.cluster }

// Close stops the broker and, with a data folder, writes its state there.
// Calling it again does nothing.
func (k *Kafka) Close() { k.cluster.Close() }
