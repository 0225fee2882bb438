package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// TestCommandTopicDeniedByACL runs the roles on a broker that enforces
// ACLs. billing's command topic lies outside Lethe's prefix: the operator
// created it and lets Lethe write it, not create it. The topic is deleted;
// a request then reaches billing and orders. Orders erases; billing shows
// pending with the broker's refusal as its reason, and the worker's log
// names it, without the subject's values. Once the operator creates the topic again, billing gets its
// command, erases, and the request completes.
func TestCommandTopicDeniedByACL(t *testing.T) {
	s := newStack(t, stackOptions{Secure: true, Policy: workflows.Policy{RetryDelay: time.Second, Settle: -1}})
	done := deniedTopic(t, s)
	if p := systemByName(t, done, "billing"); p.Status != lethe.SystemErased || p.Attempts != 1 {
		t.Errorf("billing %s after %d attempts, want erased at the first", p.Status, p.Attempts)
	}
}

// deniedTopic drives TestCommandTopicDeniedByACL's request on s, a secure
// stack, to its end and returns it; the history recorder records it too.
func deniedTopic(t *testing.T, s *stack) lethe.Erasure {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	const topic = "ext.billing.commands"
	if err := testenv.GrantKafka(ctx, s.Brokers, s.KafkaAdmin, []kafkasec.ACL{{Principal: "User:lethe",
		Resource: kafkasec.ResourceTopic, Name: "ext.", Prefixed: true, Operation: "Write"}}); err != nil {
		t.Fatal(err)
	}
	createTopic := func() {
		t.Helper()
		if err := kafkasec.EnsureTopics(ctx, s.Brokers, s.KafkaAdmin, testenv.KafkaPartitions, topic, wire.DLQTopic(topic)); err != nil {
			t.Fatalf("the operator creates %s: %v", topic, err)
		}
	}
	createTopic()
	s.putSystem(lethe.System{Name: "orders", Identifiers: []string{"email"}})
	if r := s.do(http.MethodPut, "/v1/systems/billing", map[string]any{"identifiers": []string{"email"}, "topic": topic}); r.Status != http.StatusCreated {
		t.Fatalf("PUT /v1/systems/billing = %d %s", r.Status, r.Body)
	}
	if s.Signed {
		s.issueCredential("billing")
	}
	s.runConnector("orders", erase())
	admin := &kafka.Client{Addr: kafka.TCP(s.Brokers...), Transport: s.KafkaAdmin.Transport()}
	if res, err := admin.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil || res.Errors[topic] != nil {
		t.Fatalf("delete %s: %v %v", topic, err, res)
	}

	const email = "denied-1@example.test"
	e := s.submit(map[string]string{"email": email})
	var billing lethe.SystemProgress
	poll(t, ctx, "orders erased and billing pending with the reason", func() bool {
		got, err := s.Store.GetErasure(ctx, e.ID)
		if err != nil {
			return false
		}
		var erased bool
		for _, p := range got.Systems {
			switch p.Name {
			case "orders":
				erased = p.Status == lethe.SystemErased
			case "billing":
				billing = p
			}
		}
		return erased && billing.Status == lethe.SystemPending && strings.Contains(billing.Detail, "not dispatched")
	})
	if !strings.Contains(billing.Detail, topic) || !strings.Contains(billing.Detail, "not authorized") {
		t.Errorf("billing's detail %q does not name the topic and the refusal", billing.Detail)
	}
	if logs := s.Logs.String(); !strings.Contains(logs, "commands not dispatched") || !strings.Contains(logs, "not authorized") {
		t.Errorf("no log line gives the cause of the failed dispatch")
	}
	if strings.Contains(s.Logs.String(), email) {
		t.Errorf("the logs hold the subject's email")
	}

	createTopic()
	if err := testenv.AddKafkaUser(ctx, s.Brokers, s.KafkaAdmin, "billing", kafkaPassword("billing"), []kafkasec.ACL{
		{Principal: "User:billing", Resource: kafkasec.ResourceTopic, Name: topic, Operation: "Read"},
		{Principal: "User:billing", Resource: kafkasec.ResourceGroup, Name: connectors.GroupPrefix + "billing", Operation: "Read"},
		{Principal: "User:billing", Resource: kafkasec.ResourceTopic, Name: wire.ConfirmationsTopic, Operation: "Write"},
		{Principal: "User:billing", Resource: kafkasec.ResourceTopic, Name: wire.DLQTopic(topic), Operation: "Write"},
	}); err != nil {
		t.Fatal(err)
	}
	m, err := connectors.SASL(testenv.KafkaMechanism, "billing", kafkaPassword("billing"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := connectors.Config{Brokers: s.Brokers, System: "billing", Topic: topic, SASL: m, Logger: s.Log.With("connector", "billing")}
	if c, ok := s.credential("billing"); ok {
		cfg.KeyID, cfg.Secret = c.KeyID, c.Secret
	}
	s.goRun("connector billing", func(ctx context.Context) error { return connectors.Run(ctx, cfg, erase()) })
	done := s.await(e.ID, time.Minute)
	expect(t, done, lethe.RequestCompleted)
	return done
}

// poll waits until cond holds, failing the test with what when ctx ends.
func poll(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
