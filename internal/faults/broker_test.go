package faults_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lethe-dev/lethe"
)

// TestBrokerRefusesProduceAndFetch makes the broker answer every produce and
// every fetch with NOT_LEADER_FOR_PARTITION for a while, then recover.
// Requests submitted during the outage cannot dispatch a command nor receive
// a confirmation; none may be lost, finished early or dispatched twice: each
// completes after the recovery, exactly once.
func TestBrokerRefusesProduceAndFetch(t *testing.T) {
	s := newStack(t, stackOptions{Worker: true, Relay: true})
	ctx, cancel := s.deadline()
	defer cancel()
	a, b := newService("ledger-a", false), newService("ledger-b", false)
	s.putSystem(a)
	s.putSystem(b)
	before := s.submit(subject("broker", 0))
	s.awaitFinal(ctx, before.ID)

	produce := s.Kafka.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1})
	fetch := s.Kafka.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: -1})
	var during []lethe.Erasure
	for i := 1; i <= 3; i++ {
		during = append(during, s.submit(subject("broker", i)))
	}
	// The outage lasts until the broker has refused the worker's dispatches
	// and the consumers' fetches many times over.
	eventually(t, ctx, "the broker refused 10 produce and 10 fetch requests", func() bool {
		return produce.Hits() >= 10 && fetch.Hits() >= 10
	})
	if n := s.countFinal(ctx, ids(during)); n != 0 {
		t.Fatalf("%d requests finished while the broker refused every produce and fetch", n)
	}
	if n := a.seen() + b.seen(); n != 2 {
		t.Fatalf("services saw %d requests during the outage, want only the 2 commands of the request before it", n)
	}
	produce.Remove()
	fetch.Remove()
	t.Logf("the broker refused %d produce and %d fetch requests, then recovered", produce.Hits(), fetch.Hits())

	all := append([]lethe.Erasure{before}, during...)
	s.awaitFinal(ctx, ids(all)...)
	s.verify(ctx, expectCompleted(all, a.name, b.name)...)
}
