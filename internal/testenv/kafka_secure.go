package testenv

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lethe-dev/lethe/internal/kafkasec"
)

// KafkaMechanism is the SASL mechanism of SecureKafka's logins.
const KafkaMechanism = kafkasec.SASLSCRAMSHA512

// KafkaAdmin is SecureKafka's superuser, which bypasses the ACLs.
const KafkaAdmin = "admin"

// KafkaUser is a SASL login of SecureKafka and the only rights it has.
type KafkaUser struct {
	Name, Password string
	ACLs           []kafkasec.ACL
}

// SecureKafka is Kafka with SASL/SCRAM-SHA-512 required and ACLs enforced:
// each of users may do what its ACLs allow and nothing else, and
// KafkaAdmin (password adminPassword) may do everything. It is the broker
// the least-privilege tests and the secure end-to-end stack run on.
func SecureKafka(t testing.TB, adminPassword string, users []KafkaUser, topics ...string) (brokers []string, cluster *kfake.Cluster) {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1), kfake.DefaultNumPartitions(KafkaPartitions),
		kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(KafkaMechanism, KafkaAdmin, adminPassword),
	}
	for _, u := range users {
		acls := make([]kfake.ACL, len(u.ACLs))
		for i, a := range u.ACLs {
			acls[i] = kfakeACL(t, a)
		}
		opts = append(opts, kfake.User(KafkaMechanism, u.Name, u.Password, acls...))
	}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(KafkaPartitions, topics...))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("testenv: start secure kfake broker: %v", err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs(), cluster
}

// kfakeACL is a as kfake takes it: an allowing rule from any host.
func kfakeACL(t testing.TB, a kafkasec.ACL) kfake.ACL {
	t.Helper()
	resource, err := kmsg.ParseACLResourceType(a.Resource)
	if err != nil {
		t.Fatalf("testenv: ACL %+v: %v", a, err)
	}
	op, err := kmsg.ParseACLOperation(a.Operation)
	if err != nil {
		t.Fatalf("testenv: ACL %+v: %v", a, err)
	}
	pattern := kmsg.ACLResourcePatternTypeLiteral
	if a.Prefixed {
		pattern = kmsg.ACLResourcePatternTypePrefixed
	}
	return kfake.ACL{Resource: resource, Name: a.Name, Pattern: pattern, Operation: op, Allow: true}
}
