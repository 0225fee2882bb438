package faults_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/activities"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
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
	topic := deleteTopic(t, ctx, s, missing.name)

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

// TestCommandTopicCannotBeCreated deletes a registered system's command
// topic and refuses to create it again, as a cluster whose ACLs deny Lethe
// Create does. A request reaches that system and one whose topic exists:
// the other system erases at once; the stuck one shows pending, not
// dispatched, with the reason, escalated (not_dispatched) in the audit,
// and the log names the cause. Once creating topics is allowed, the stuck
// system gets its command, erases, and the request completes.
func TestCommandTopicCannotBeCreated(t *testing.T) {
	refuser := &refusingTopics{}
	refuser.refuse.Store(true)
	s := newStack(t, stackOptions{Worker: true, Relay: true,
		Policy: workflows.Policy{RetryDelay: time.Second, Settle: -1},
		Topics: func(e activities.TopicEnsurer) activities.TopicEnsurer {
			refuser.TopicEnsurer = e
			return refuser
		}})
	ctx, cancel := s.deadline()
	defer cancel()
	present, missing := newService("topic-ok", false), newService("topic-denied", true)
	s.putSystem(present)
	s.putSystem(missing)
	topic := deleteTopic(t, ctx, s, missing.name)

	req := s.submit(subject("denied", 0))
	var stuck lethe.SystemProgress
	eventually(t, ctx, "the other system erased and the stuck one shows pending in the ledger", func() bool {
		e, err := s.Store.GetErasure(ctx, req.ID)
		if err != nil {
			return false
		}
		var erased bool
		for _, p := range e.Systems {
			switch p.Name {
			case present.name:
				erased = p.Status == lethe.SystemErased
			case missing.name:
				stuck = p
			}
		}
		return erased && stuck.Status == lethe.SystemPending && strings.Contains(stuck.Detail, "could not be created")
	})
	if !strings.Contains(stuck.Detail, topic) || !strings.Contains(stuck.Detail, "not authorized") {
		t.Errorf("the stuck system's detail %q does not name the topic and the cause", stuck.Detail)
	}
	events, err := s.Store.Audit(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	var escalated, dispatched int
	for _, ev := range events {
		if ev.System == missing.name && ev.Kind == lethe.AuditEscalated && strings.HasPrefix(ev.Detail, "not dispatched") {
			escalated++
		}
		if ev.System == missing.name && ev.Kind == lethe.AuditDispatched {
			dispatched++
		}
	}
	if escalated == 0 || dispatched != 0 {
		t.Errorf("audit of the stuck system: %d not-dispatched escalations, %d dispatches; want some, and none\n%s",
			escalated, dispatched, auditText(events))
	}
	if logs := s.Logs.String(); !strings.Contains(logs, "commands not dispatched") || !strings.Contains(logs, "not authorized") {
		t.Errorf("no log line gives the cause of the failed dispatch")
	}

	refuser.refuse.Store(false)
	s.release(missing)
	s.awaitFinal(ctx, req.ID)
	e, err := s.Store.GetErasure(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != lethe.RequestCompleted {
		t.Errorf("request %s, want completed", e.Status)
	}
	for _, p := range e.Systems {
		if p.Status != lethe.SystemErased {
			t.Errorf("system %s: %s (%s), want erased", p.Name, p.Status, p.Detail)
		}
	}
	s.verifyServices(ctx)
}

// refusingTopics refuses to create topics while refuse is set, as a broker
// whose ACLs deny Lethe Create does.
type refusingTopics struct {
	activities.TopicEnsurer
	refuse atomic.Bool
}

func (r *refusingTopics) EnsureTopics(ctx context.Context, names ...string) error {
	if r.refuse.Load() {
		return fmt.Errorf("create topics: %w", kafka.TopicAuthorizationFailed)
	}
	return r.TopicEnsurer.EnsureTopics(ctx, names...)
}

// deleteTopic deletes a system's command topic, as an operator would, and
// waits until the broker no longer knows it.
func deleteTopic(t *testing.T, ctx context.Context, s *stack, system string) string {
	t.Helper()
	topic := wire.DefaultTopic(system)
	c := &kafka.Client{Addr: kafka.TCP(s.Brokers...)}
	res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("delete topic %s: %v %v", topic, err, res)
	}
	eventually(t, ctx, "topic "+topic+" is gone", func() bool { return len(s.Kafka.PartitionInfos(topic)) == 0 })
	return topic
}
