package testenv

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"

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

// scramIterations is the SCRAM iteration count AddKafkaUser stores, the
// lowest Kafka accepts: these users live for one test.
const scramIterations = 4096

// AddKafkaUser creates the SCRAM-SHA-512 login user with password on a
// running SecureKafka, as an operator does with kafka-configs.sh and
// kafka-acls.sh, and grants it acls. admin is KafkaAdmin's connections.
// It exists for tests whose principals are known only as they go, such as
// the connectors the end-to-end stack starts.
func AddKafkaUser(ctx context.Context, brokers []string, admin kafkasec.Security, user, password string, acls []kafkasec.ACL) error {
	salt := make([]byte, 32)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha512.New, password, salt, scramIterations, sha512.Size)
	if err != nil {
		return err
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: admin.Transport()}
	res, err := client.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{
		Upsertions: []kafka.UserScramCredentialsUpsertion{{Name: user, Mechanism: kafka.ScramMechanismSha512,
			Iterations: scramIterations, Salt: salt, SaltedPassword: salted}},
	})
	if err != nil {
		return fmt.Errorf("add kafka user %s: %w", user, err)
	}
	for _, r := range res.Results {
		if r.Error != nil {
			return fmt.Errorf("add kafka user %s: %w", user, r.Error)
		}
	}
	return GrantKafka(ctx, brokers, admin, acls)
}

// GrantKafka adds acls on a running SecureKafka, as an operator does with
// kafka-acls.sh; admin is KafkaAdmin's connections.
func GrantKafka(ctx context.Context, brokers []string, admin kafkasec.Security, acls []kafkasec.ACL) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: admin.Transport()}
	entries := make([]kafka.ACLEntry, len(acls))
	for i, a := range acls {
		e := kafka.ACLEntry{ResourceName: a.Name, Principal: a.Principal, Host: "*",
			ResourcePatternType: kafka.PatternTypeLiteral, PermissionType: kafka.ACLPermissionTypeAllow}
		if a.Prefixed {
			e.ResourcePatternType = kafka.PatternTypePrefixed
		}
		if err := errors.Join(e.ResourceType.UnmarshalText([]byte(a.Resource)), e.Operation.UnmarshalText([]byte(a.Operation))); err != nil {
			return fmt.Errorf("acl %+v: %w", a, err)
		}
		entries[i] = e
	}
	created, err := client.CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: entries})
	if err != nil {
		return fmt.Errorf("grant kafka acls: %w", err)
	}
	for _, e := range created.Errors {
		if e != nil {
			return fmt.Errorf("grant kafka acls: %w", e)
		}
	}
	return nil
}

// KafkaLogin is the Security of a SecureKafka login.
func KafkaLogin(t testing.TB, user, password string) kafkasec.Security {
	t.Helper()
	sec, err := kafkasec.Settings{SASL: true, SASLMechanism: KafkaMechanism, Username: user, Password: password}.Build(kafkasec.Names{})
	if err != nil {
		t.Fatalf("testenv: kafka login %s: %v", user, err)
	}
	t.Cleanup(sec.Close)
	return sec
}
