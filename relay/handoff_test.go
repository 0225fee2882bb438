package relay_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/relay"
)

// longSession is a session timeout far beyond the test's wait: a group that
// changes within the wait did so because a member left, not because the
// coordinator evicted it (kfake's maximum is 300s).
var longSession = kafkasec.GroupTimeouts{Session: 280 * time.Second, Heartbeat: time.Second, Rebalance: 10 * time.Second}

// TestStoppedRelayLeavesTheGroup: a relay whose context ends leaves its
// consumer group, so that the other replica takes every partition at the
// next rebalance instead of after the session timeout.
func TestStoppedRelayLeavesTheGroup(t *testing.T) {
	brokers, cluster := testenv.Kafka(t, topic)
	sessions := testenv.RecordSessions(cluster, relay.DefaultGroupID)
	logs := &testenv.LogBuffer{}
	cfg := config(brokers, logs)
	cfg.Group = longSession
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a, err := relay.New(cfg, &signaler{}, &auditor{})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	g := testenv.AwaitGroup(ctx, t, brokers, relay.DefaultGroupID, topic, "relay A holds every partition", func(g testenv.Group) bool {
		return len(g.Members) == 1 && g.Stable(testenv.KafkaPartitions)
	})
	memberA := slices.Collect(maps.Keys(g.Members))[0]

	start(t, cfg, &signaler{}, &auditor{})
	testenv.AwaitGroup(ctx, t, brokers, relay.DefaultGroupID, topic, "relays A and B share the partitions", func(g testenv.Group) bool {
		return len(g.Members) == 2 && g.Stable(testenv.KafkaPartitions) && len(g.Members[memberA]) > 0
	})

	stopA()
	select {
	case err := <-aDone:
		if err != nil {
			t.Fatalf("relay A: Run returned %v after cancel, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("relay A did not stop")
	}
	g = testenv.AwaitGroup(ctx, t, brokers, relay.DefaultGroupID, topic, "relay B alone holds every partition", func(g testenv.Group) bool {
		return len(g.Members) == 1 && g.Stable(testenv.KafkaPartitions)
	})
	if _, ok := g.Members[memberA]; ok {
		t.Errorf("relay A (%s) is still the group's member after it stopped: %+v", memberA, g)
	}
	if got := sessions(); len(got) == 0 || slices.ContainsFunc(got, func(ms int32) bool { return ms != 280_000 }) {
		t.Errorf("session timeouts the relays joined with: %v ms, want only 280000 (Config.Group)", got)
	}
}
