package roles_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/roles"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

const aclTimeout = 30 * time.Second

// aclCluster starts a broker enforcing the ACLs of Lethe (user lethe) and
// of two services, orders and billing, each its own principal.
func aclCluster(t *testing.T) []string {
	t.Helper()
	users := []testenv.KafkaUser{
		{Name: "lethe", Password: "lethe-secret", ACLs: roles.LetheKafkaACLs("lethe")},
		{Name: "orders", Password: "orders-secret", ACLs: roles.ServiceKafkaACLs("orders", "orders")},
		{Name: "billing", Password: "billing-secret", ACLs: roles.ServiceKafkaACLs("billing", "billing")},
	}
	var topics []string
	for _, s := range []string{"orders", "billing"} {
		topics = append(topics, wire.DefaultTopic(s), wire.DLQTopic(wire.DefaultTopic(s)))
	}
	topics = append(topics, wire.ConfirmationsTopic, wire.DLQTopic(wire.ConfirmationsTopic))
	brokers, _ := testenv.SecureKafka(t, "admin-secret", users, topics...)
	return brokers
}

// login is user's secured connections (its password is user + "-secret").
func login(t *testing.T, user string) kafkasec.Security {
	t.Helper()
	sec, err := kafkasec.Settings{SASL: true, SASLMechanism: testenv.KafkaMechanism, Username: user, Password: user + "-secret"}.
		Build(kafkasec.Names{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sec.Close)
	return sec
}

// partition0 connects as sec's principal straight to the broker leading
// partition 0 of topic (kfake's one broker, node 0), without asking the
// cluster's metadata first: a broker hides the topics a principal may not
// describe from its metadata, and the request itself must be refused.
func partition0(ctx context.Context, brokers []string, sec kafkasec.Security, topic string) (*kafka.Conn, error) {
	host, port, err := net.SplitHostPort(brokers[0])
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	return sec.Dialer().DialPartition(ctx, "tcp", brokers[0],
		kafka.Partition{Topic: topic, ID: 0, Leader: kafka.Broker{Host: host, Port: p, ID: 0}})
}

// produce writes one message to partition 0 of topic as sec's principal.
func produce(ctx context.Context, brokers []string, sec kafkasec.Security, topic string) error {
	conn, err := partition0(ctx, brokers, sec, topic)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.WriteMessages(kafka.Message{Key: []byte("k"), Value: []byte(`{}`)})
	return err
}

// fetch reads partition 0 of topic from the start as sec's principal,
// without a consumer group. produce has written a message there first.
func fetch(ctx context.Context, brokers []string, sec kafkasec.Security, topic string) error {
	conn, err := partition0(ctx, brokers, sec, topic)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.ReadMessage(1 << 20)
	return err
}

// refused reports whether err is the broker's authorization refusal.
func refused(err error) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 {
		err = werrs[0]
	}
	return errors.Is(err, kafka.TopicAuthorizationFailed) || errors.Is(err, kafka.GroupAuthorizationFailed) ||
		errors.Is(err, kafka.ClusterAuthorizationFailed)
}

func TestLeastPrivilegeACLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), aclTimeout)
	defer cancel()
	brokers := aclCluster(t)
	lethe, orders := login(t, "lethe"), login(t, "orders")
	ordersTopic, billingTopic := wire.DefaultTopic("orders"), wire.DefaultTopic("billing")
	admin, err := kafkasec.Settings{SASL: true, SASLMechanism: testenv.KafkaMechanism, Username: testenv.KafkaAdmin, Password: "admin-secret"}.
		Build(kafkasec.Names{})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Every topic read below has a message to read.
	for _, topic := range []string{ordersTopic, billingTopic, wire.ConfirmationsTopic} {
		if err := produce(ctx, brokers, admin, topic); err != nil {
			t.Fatalf("admin writes %s: %v", topic, err)
		}
	}

	// What each principal needs works.
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"lethe writes a command", produce(ctx, brokers, lethe, billingTopic)},
		{"lethe writes a command to orders", produce(ctx, brokers, lethe, ordersTopic)},
		{"lethe dead-letters a confirmation", produce(ctx, brokers, lethe, wire.DLQTopic(wire.ConfirmationsTopic))},
		{"lethe creates a new system's topics", kafkasec.EnsureTopics(ctx, brokers, lethe, 1, wire.DefaultTopic("crm"), wire.DLQTopic(wire.DefaultTopic("crm")))},
		{"orders confirms", produce(ctx, brokers, orders, wire.ConfirmationsTopic)},
		{"orders dead-letters its own command", produce(ctx, brokers, orders, wire.DLQTopic(ordersTopic))},
		{"orders reads its own commands", fetch(ctx, brokers, orders, ordersTopic)},
		{"lethe reads confirmations", fetch(ctx, brokers, lethe, wire.ConfirmationsTopic)},
	} {
		if tt.err != nil {
			t.Errorf("%s: %v", tt.name, tt.err)
		}
	}

	// What each principal must not do is refused by the broker.
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"orders reads billing's commands", fetch(ctx, brokers, orders, billingTopic)},
		{"orders writes a command to billing", produce(ctx, brokers, orders, billingTopic)},
		{"orders forges a command to itself", produce(ctx, brokers, orders, ordersTopic)},
		{"orders reads the confirmations", fetch(ctx, brokers, orders, wire.ConfirmationsTopic)},
		{"orders creates a topic", kafkasec.EnsureTopics(ctx, brokers, orders, 1, wire.DefaultTopic("orders2"))},
		{"lethe reads a command", fetch(ctx, brokers, lethe, ordersTopic)},
		{"lethe creates a topic outside its prefix", kafkasec.EnsureTopics(ctx, brokers, lethe, 1, "payments.events")},
	} {
		if !refused(tt.err) {
			t.Errorf("%s: err %v, want the broker's authorization refusal", tt.name, tt.err)
		}
	}
}

// A service's consumer group is its own: committing an offset of its own
// topic in its own group works; another system's group, or its own group
// over another system's topic, is refused.
func TestServiceGroupACLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), aclTimeout)
	defer cancel()
	brokers := aclCluster(t)
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: login(t, "orders").Transport()}
	commit := func(group, topic string) error {
		res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
			Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 0}}}})
		if err != nil {
			return err
		}
		for _, p := range res.Topics[topic] {
			if p.Error != nil {
				return p.Error
			}
		}
		return nil
	}
	if err := commit("lethe-connector-orders", wire.DefaultTopic("orders")); err != nil {
		t.Errorf("orders commits in its own group: %v", err)
	}
	for _, tt := range []struct{ group, topic string }{
		{"lethe-connector-orders", wire.DefaultTopic("billing")},
		{"lethe-connector-billing", wire.DefaultTopic("orders")},
		{"lethe-relay", wire.ConfirmationsTopic},
	} {
		if err := commit(tt.group, tt.topic); !refused(err) {
			t.Errorf("orders commits in group %s on %s: err %v, want the broker's refusal", tt.group, tt.topic, err)
		}
	}
}

// docs/security.md lists the kafka-acls.sh lines of every rule, so that an
// operator runs exactly what the tests enforce.
func TestSecurityDocListsTheACLs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	acls := append(roles.LetheKafkaACLs("lethe"), roles.ServiceKafkaACLs("orders", "orders")...)
	for _, a := range acls {
		if !strings.Contains(string(doc), a.Command()) {
			t.Errorf("docs/security.md lacks\n%s", a.Command())
		}
	}
}
