package connectors_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/internal/testenv"
	"github.com/lethe-dev/lethe/wire"
)

// TestStoppedConnectorLeavesTheGroup: a replica whose context ends leaves
// its consumer group, so that the other replica takes every partition at
// the next rebalance. The session is far longer than the test's wait, so
// the change cannot come from the coordinator evicting the replica.
func TestStoppedConnectorLeavesTheGroup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, cluster := testenv.Kafka(t, topic, wire.ConfirmationsTopic)
	group := connectors.GroupPrefix + system
	sessions := testenv.RecordSessions(cluster, group)
	h := connectors.HandlerFunc(func(context.Context, connectors.Request) (connectors.Result, error) {
		return connectors.Result{Outcome: wire.OutcomeErased}, nil
	})
	cfg := config(brokers, nil)
	cfg.SessionTimeout, cfg.HeartbeatInterval = 280*time.Second, time.Second // kfake allows up to 300s

	a := runInBackground(t, cfg, h)
	g := testenv.AwaitGroup(ctx, t, brokers, group, topic, "replica A holds every partition", func(g testenv.Group) bool {
		return len(g.Members) == 1 && g.Stable(testenv.KafkaPartitions)
	})
	memberA := slices.Collect(maps.Keys(g.Members))[0]
	runInBackground(t, cfg, h)
	testenv.AwaitGroup(ctx, t, brokers, group, topic, "replicas A and B share the partitions", func(g testenv.Group) bool {
		return len(g.Members) == 2 && g.Stable(testenv.KafkaPartitions) && len(g.Members[memberA]) > 0
	})

	a.cancel()
	if err := a.wait(ctx, t); err != nil {
		t.Fatalf("replica A: Run = %v after cancel, want nil", err)
	}
	g = testenv.AwaitGroup(ctx, t, brokers, group, topic, "replica B alone holds every partition", func(g testenv.Group) bool {
		return len(g.Members) == 1 && g.Stable(testenv.KafkaPartitions)
	})
	if _, ok := g.Members[memberA]; ok {
		t.Errorf("replica A (%s) is still the group's member after it stopped: %+v", memberA, g)
	}
	if got := sessions(); len(got) == 0 || slices.ContainsFunc(got, func(ms int32) bool { return ms != 280_000 }) {
		t.Errorf("session timeouts the replicas joined with: %v ms, want only 280000 (Config.SessionTimeout)", got)
	}
}

// TestGroupTimeoutsValidated: consumer group timeouts that are negative or
// would let a live replica be evicted between two heartbeats are refused
// with an error that says which.
func TestGroupTimeoutsValidated(t *testing.T) {
	base := connectors.Config{Brokers: []string{"b:1"}, System: system}
	for _, tt := range []struct {
		name string
		set  func(*connectors.Config)
		want string
	}{
		{"negative session", func(c *connectors.Config) { c.SessionTimeout = -time.Second }, "negative"},
		{"negative rebalance", func(c *connectors.Config) { c.RebalanceTimeout = -time.Second }, "negative"},
		{"session under a second", func(c *connectors.Config) {
			c.SessionTimeout, c.HeartbeatInterval = 500*time.Millisecond, 100*time.Millisecond
		}, "under a second"},
		{"heartbeat too rare", func(c *connectors.Config) { c.HeartbeatInterval = 3 * time.Second }, "a third of the session"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.set(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	ok := base
	ok.SessionTimeout, ok.HeartbeatInterval, ok.RebalanceTimeout = 10*time.Second, 2*time.Second, 20*time.Second
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate refused sound timeouts: %v", err)
	}
}
