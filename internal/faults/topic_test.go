package faults_test

import (
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/wire"
)

// TestMissingCommandTopic deletes a registered system's command topic, as
// an operator might, or as a fresh broker behind a registry that remembers
// the system has none. A request reaches that system and one whose topic
// exists: the worker creates the missing topic again, as PUT /v1/systems
// does, both systems get their command and erase, and the request
// completes. The log names the missing topic and why the publish failed,
// and holds none of the subject's values.
func TestMissingCommandTopic(t *testing.T) {
	s := newStack(t, stackOptions{Worker: true, Relay: true})
	ctx, cancel := s.deadline()
	defer cancel()
	present, missing := newService("topic-present", false), newService("topic-missing", true)
	s.putSystem(present)
	s.putSystem(missing)
	topic := wire.DefaultTopic(missing.name)
	c := &kafka.Client{Addr: kafka.TCP(s.Brokers...)}
	res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("delete topic %s: %v %v", topic, err, res)
	}
	eventually(t, ctx, "topic "+topic+" is gone", func() bool { return len(s.Kafka.PartitionInfos(topic)) == 0 })

	subj := subject("topic", 0)
	req := s.submit(subj)
	eventually(t, ctx, "the command reached the re-created topic "+topic, func() bool {
		return len(s.Kafka.PartitionInfos(topic)) > 0 && s.published(topic) > 0
	})
	s.release(missing)
	s.awaitFinal(ctx, req.ID)
	s.verify(ctx, expectCompleted([]lethe.Erasure{req}, present.name, missing.name)...)

	logs := s.Logs.String()
	if !strings.Contains(logs, "command topics missing; creating them") || !strings.Contains(logs, topic) {
		t.Errorf("no log line names the missing topic %s", topic)
	}
	for _, v := range subj {
		if strings.Contains(logs, v) {
			t.Errorf("the logs hold an identifier value of the subject")
		}
	}
}
