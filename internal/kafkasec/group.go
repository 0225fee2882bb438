package kafkasec

import (
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Defaults of GroupTimeouts. kafka-go's own (a 30 s session, 3 s
// heartbeats) make the loss of a replica stall its partitions for half a
// minute; these recover in a few seconds. Six seconds is the lowest
// session a Kafka broker accepts unless its group.min.session.timeout.ms is
// lowered.
const (
	DefaultSessionTimeout    = 6 * time.Second
	DefaultHeartbeatInterval = time.Second
	DefaultRebalanceTimeout  = 10 * time.Second
)

// GroupTimeouts say how fast a consumer group gets over the loss of a
// member: a member that stops heartbeating is evicted after Session, the
// others learn of the rebalance at their next heartbeat, and the
// coordinator waits at most Rebalance for them to rejoin. A member that
// closes its reader leaves the group at once and costs none of this. Zero
// fields take the defaults above.
type GroupTimeouts struct {
	Session   time.Duration
	Heartbeat time.Duration
	Rebalance time.Duration
}

// WithDefaults fills in the zero fields of g.
func (g GroupTimeouts) WithDefaults() GroupTimeouts {
	if g.Session == 0 {
		g.Session = DefaultSessionTimeout
	}
	if g.Heartbeat == 0 {
		g.Heartbeat = DefaultHeartbeatInterval
	}
	if g.Rebalance == 0 {
		g.Rebalance = DefaultRebalanceTimeout
	}
	return g
}

// Validate reports the first problem of g once its defaults are filled in:
// a negative duration, or heartbeats too rare for the session, which would
// let a live member be evicted between two of them (Kafka's rule of thumb,
// which this enforces, is at most a third of the session).
func (g GroupTimeouts) Validate() error {
	if g.Session < 0 || g.Heartbeat < 0 || g.Rebalance < 0 {
		return errors.New("consumer group timeouts must not be negative")
	}
	g = g.WithDefaults()
	if g.Session < time.Second {
		return fmt.Errorf("consumer group session timeout %s is under a second", g.Session)
	}
	if 3*g.Heartbeat > g.Session {
		return fmt.Errorf("consumer group heartbeat interval %s is more than a third of the session timeout %s", g.Heartbeat, g.Session)
	}
	return nil
}

// apply sets g, defaults filled in, on cfg.
func (g GroupTimeouts) apply(cfg *kafka.ReaderConfig) {
	g = g.WithDefaults()
	cfg.SessionTimeout = g.Session
	cfg.HeartbeatInterval = g.Heartbeat
	cfg.RebalanceTimeout = g.Rebalance
}
