package connectors

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// WithAfterRecord returns cfg with a hook that Run calls once a confirmation
// is recorded in the dedup store and before it is published, with the
// context the publishing would run under: the window a fault test kills a
// consumer in.
func WithAfterRecord(cfg Config, hook func(ctx context.Context, c wire.Confirmation)) Config {
	cfg.afterRecord = hook
	return cfg
}

// WithQuickRebalance returns cfg with the consumer group's timeouts as short
// as kfake allows, so that a fault test's rebalance (after a broker restart
// left a stale member behind, or after a replica left) takes seconds rather
// than kafka-go's default half minute. The behaviour is the same, only
// faster.
func WithQuickRebalance(cfg Config) Config {
	cfg.tuneReader = func(rc *kafka.ReaderConfig) {
		rc.SessionTimeout = 6 * time.Second // kfake's minimum
		rc.RebalanceTimeout = 2 * time.Second
		rc.HeartbeatInterval = 500 * time.Millisecond
		rc.JoinGroupBackoff = 500 * time.Millisecond
	}
	return cfg
}
