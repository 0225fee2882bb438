package activities

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
)

// wholeWriteRefuser is a Kafka writer that, like kafka-go's when it cannot
// find a topic, refuses a whole write that holds one message to an unknown
// topic, naming no message.
type wholeWriteRefuser struct {
	mu        sync.Mutex
	unknown   map[string]bool
	published []kafka.Message
}

func (w *wholeWriteRefuser) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range msgs {
		if w.unknown[m.Topic] {
			return kafka.UnknownTopicOrPartition
		}
	}
	w.published = append(w.published, msgs...)
	return nil
}

// refusedTopics refuses to create any topic, and records what it was asked.
type refusedTopics struct{ asked [][]string }

func (r *refusedTopics) EnsureTopics(_ context.Context, names ...string) error {
	r.asked = append(r.asked, slices.Clone(names))
	return kafka.TopicAuthorizationFailed
}

// TestSyncAMissingTopicHoldsBackOnlyItsOwnCommands: a write refused whole
// for one missing topic is written again topic by topic, so the commands to
// a topic that exists go out, and only the missing topic is created (here,
// refused) and its command given back undelivered.
func TestSyncAMissingTopicHoldsBackOnlyItsOwnCommands(t *testing.T) {
	pub := &wholeWriteRefuser{unknown: map[string]bool{"lethe.erasure.orders": true}}
	topics := &refusedTopics{}
	env := newEnv()
	a := &Activities{Publisher: pub, Ledger: &fakeLedger{j: &journal{}}, Topics: topics}
	env.RegisterActivity(a)
	in := SyncInput{
		RequestID: testRequestID,
		Commands: []Outbound{
			{Topic: "lethe.erasure.billing", Command: command(testCommandA, "billing")},
			{Topic: "lethe.erasure.orders", Command: command(testCommandB, "orders")},
		},
		Ledger:  lethe.LedgerDelta{Status: lethe.RequestRunning},
		Partial: true,
	}
	v, err := env.ExecuteActivity(a.Sync, in)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	var res SyncResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if len(pub.published) != 1 || pub.published[0].Topic != "lethe.erasure.billing" {
		t.Errorf("published %d messages, want billing's alone", len(pub.published))
	}
	if len(res.Undelivered) != 1 || res.Undelivered[0].System != "orders" || res.Undelivered[0].CommandID != testCommandB {
		t.Errorf("undelivered %+v, want orders' command alone", res.Undelivered)
	}
	if len(topics.asked) != 1 || !slices.Equal(topics.asked[0], []string{"lethe.erasure.orders"}) {
		t.Errorf("asked to create %v, want only the missing topic", topics.asked)
	}
}
