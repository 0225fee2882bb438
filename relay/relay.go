// Package relay carries confirmations from Kafka to the erasure workflows:
// it reads the confirmations topic, coalesces what it fetched for one
// request into one signal, and commits the batch only once every signal was
// accepted. The topic also carries batch confirmations, which answer many
// subjects of one chunk of a bulk erasure; they go to the chunk's workflow
// the same way, in signals of their own (messages.go). Checking a
// confirmation against the commands issued is the workflow's job; the
// relay only routes, dead-letters what it cannot decode or whose signature
// does not hold (signatures.go), and audits confirmations that arrive
// after their workflow ended.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.temporal.io/api/serviceerror"
	"golang.org/x/sync/errgroup"

	"github.com/lethe-dev/lethe"
	"github.com/lethe-dev/lethe/credential"
	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/internal/kafkax"
	"github.com/lethe-dev/lethe/wire"
	"github.com/lethe-dev/lethe/workflows"
)

// Signaler delivers a signal to a workflow. Temporal's client.Client
// satisfies it; tests pass a fake.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg interface{}) error
}

// Auditor appends events to requests' audit trails. registry.Store
// satisfies it.
type Auditor interface {
	AppendAudit(ctx context.Context, events []lethe.AuditEvent) error
}

// Metrics records what a relay does for /metrics; internal/metrics.Metrics
// implements it. Its arguments are topic names, fixed reasons and counts.
type Metrics interface {
	// DeadLettered counts n messages read from topic and dead-lettered for
	// reason: DLQMalformed or DLQBadSignature.
	DeadLettered(topic, reason string, n int)
	// RelayLag records how many confirmations are left to read, as the
	// Kafka reader saw it after the relay's last batch.
	RelayLag(n int64)
}

// DLQMalformed is the metrics reason of a message that is neither a
// confirmation nor a batch confirmation of the wire format; the message's
// wire.HeaderDLQReason header says what was wrong with it.
const DLQMalformed = "malformed"

// Config says where the confirmations are and how many the relay takes at once.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// Security secures the connections to the brokers; the zero value is
	// plaintext.
	Security kafkasec.Security
	// GroupID is the relay's consumer group, shared by its replicas;
	// default DefaultGroupID.
	GroupID string
	// Group says how fast the group hands the partitions of a replica that
	// died to the others (LETHE_KAFKA_SESSION_TIMEOUT,
	// LETHE_KAFKA_HEARTBEAT_INTERVAL, LETHE_KAFKA_REBALANCE_TIMEOUT); zero
	// fields take kafkasec's defaults. A relay whose context ends leaves
	// the group at once.
	Group kafkasec.GroupTimeouts
	// Topic is where confirmations arrive; default wire.ConfirmationsTopic.
	Topic string
	// BatchSize bounds how many confirmations one round takes; default 500.
	BatchSize int
	// BatchWait is how long a round waits for more after the first; default
	// 20ms. Longer waits coalesce more confirmations into each signal.
	BatchWait time.Duration
	// Concurrency bounds how many requests are signaled at once; default 16.
	Concurrency int
	// Logger receives the relay's logs, which never carry identifier values;
	// default slog.Default().
	Logger *slog.Logger
	// Now stamps audit events and is the time at which credentials must
	// be valid; default time.Now.
	Now func() time.Time
	// Credentials, when set, makes the relay check the signatures of the
	// confirmations of systems that were issued credentials; nil accepts
	// every confirmation unsigned.
	Credentials Credentials
	// SystemKey derives the secrets signatures are checked with
	// (LETHE_SYSTEM_KEY). Without it every confirmation of a system with
	// credentials is refused, since none can be checked.
	SystemKey *credential.Master
	// RequireSignatures refuses unsigned confirmations of every system,
	// including those never issued a credential
	// (LETHE_REQUIRE_SIGNATURES); it needs Credentials.
	RequireSignatures bool
	// Metrics, when set, counts dead letters and records the lag.
	Metrics Metrics
}

// Defaults of Config's optional fields.
const (
	DefaultGroupID     = "lethe-relay"
	DefaultBatchSize   = 500
	DefaultBatchWait   = 20 * time.Millisecond
	DefaultConcurrency = 16
)

// maxSignalBytes bounds the confirmations one signal carries, counted as
// their encoded size, well under Temporal's 2 MiB payload limit. A request
// whose fetched confirmations exceed it gets several signals, in order; a
// single confirmation larger than that goes alone, and a batch
// confirmation larger than that is split by its items (batchParts).
const maxSignalBytes = 512 << 10

// lateDetail is the audit detail of a confirmation nobody waits for; a
// batch confirmation's adds how many items it answers.
const lateDetail = "no running workflow"

// Validate reports the first problem of c.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("relay: config: no brokers")
	case c.BatchSize < 0:
		return errors.New("relay: config: batch size is negative")
	case c.BatchWait < 0:
		return errors.New("relay: config: batch wait is negative")
	case c.Concurrency < 0:
		return errors.New("relay: config: concurrency is negative")
	case c.RequireSignatures && c.Credentials == nil:
		return errors.New("relay: config: signatures are required but no credentials are given to check them")
	}
	if err := c.Group.Validate(); err != nil {
		return fmt.Errorf("relay: config: %w", err)
	}
	for _, b := range c.Brokers {
		if b == "" {
			return errors.New("relay: config: an empty broker address")
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.GroupID == "" {
		c.GroupID = DefaultGroupID
	}
	if c.Topic == "" {
		c.Topic = wire.ConfirmationsTopic
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Relay is the confirmations consumer. Its counters are safe to read while
// it runs.
type Relay struct {
	cfg Config
	sig Signaler
	aud Auditor
	log *slog.Logger

	signals            atomic.Int64
	confirmations      atomic.Int64
	batchConfirmations atomic.Int64
	deadLettered       atomic.Int64
	late               atomic.Int64
	badSignatures      atomic.Int64
}

// Stats counts what a Relay has done since it was built, for metrics and tests.
type Stats struct {
	// Signals is how many signals the workflows accepted, of either kind.
	Signals int64
	// Confirmations is how many single confirmations those signals carried.
	Confirmations int64
	// BatchConfirmations is how many batch confirmations those signals
	// carried. A batch confirmation the relay split because one signal
	// could not carry it (batchParts) counts once per part.
	BatchConfirmations int64
	// DeadLettered is how many malformed messages went to the dead-letter topic.
	DeadLettered int64
	// Late is how many confirmations, single or batch (counted as
	// BatchConfirmations counts them), found no running workflow and were
	// audited.
	Late int64
	// BadSignatures is how many messages, single or batch confirmations,
	// were refused for their signature, dead-lettered and audited.
	BadSignatures int64
}

// New checks cfg and returns a relay that signals through s and audits late
// confirmations through a.
func New(cfg Config, s Signaler, a Auditor) (*Relay, error) {
	if s == nil || a == nil {
		return nil, errors.New("relay: nil signaler or auditor")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Relay{cfg: cfg, sig: s, aud: a, log: cfg.Logger.With("topic", cfg.Topic)}, nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	return Stats{
		Signals:            r.signals.Load(),
		Confirmations:      r.confirmations.Load(),
		BatchConfirmations: r.batchConfirmations.Load(),
		DeadLettered:       r.deadLettered.Load(),
		Late:               r.late.Load(),
		BadSignatures:      r.badSignatures.Load(),
	}
}

// Run relays confirmations until ctx ends, then returns nil. It creates the
// confirmations topic and its dead-letter topic when they are missing, and
// returns an error only when that fails. When ctx ends it commits the batch
// it finished and closes its reader, which leaves the consumer group: the
// other replicas take its partitions at the next rebalance instead of
// after the session timeout. Every later failure (Kafka,
// Temporal, the audit store) is retried with backoff without committing, so
// a confirmation is never skipped and an outage never becomes a crash loop.
func (r *Relay) Run(ctx context.Context) error {
	dlq := wire.DLQTopic(r.cfg.Topic)
	cluster := kafkax.Cluster{Brokers: r.cfg.Brokers, Security: r.cfg.Security, Group: r.cfg.Group}
	if err := cluster.EnsureTopics(ctx, kafkax.DefaultPartitions, r.cfg.Topic, dlq); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("relay: %w", err)
	}
	reader := cluster.Reader(r.cfg.GroupID, r.cfg.Topic, r.log)
	w := cluster.Writer()
	defer func() {
		if err := reader.Close(); err != nil {
			r.log.Warn("close reader", "error", err.Error())
		}
		if err := w.Close(); err != nil {
			r.log.Warn("close writer", "error", err.Error())
		}
	}()
	r.log.Info("relay started", "group", r.cfg.GroupID)
	err := kafkax.Consume(ctx, reader, r.cfg.BatchSize, r.cfg.BatchWait, r.log, func(ctx context.Context, msgs []kafka.Message) error {
		if err := r.handle(ctx, w, msgs); err != nil {
			return err
		}
		if r.cfg.Metrics != nil {
			r.cfg.Metrics.RelayLag(reader.Stats().Lag)
		}
		return nil
	})
	r.log.Info("relay stopped")
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// handle dead-letters the malformed messages of a batch and those whose
// signature does not hold, and signals the rest, one signal per request
// and kind of confirmation, several requests at a time. It returns only
// ctx's error: everything else is retried until it succeeds, and the
// caller commits the batch only after that, whatever kinds it mixes.
func (r *Relay) handle(ctx context.Context, w *kafka.Writer, msgs []kafka.Message) error {
	var dead []kafka.Message
	var confs []decoded
	for _, m := range msgs {
		d, err := decodeMessage(m)
		if err != nil {
			r.log.Warn("confirmation dead-lettered", "partition", m.Partition, "offset", m.Offset, "reason", err.Error())
			dead = append(dead, kafkax.DeadLetter(m, err.Error()))
			continue
		}
		confs = append(confs, d)
	}
	confs, refused, err := r.checkSignatures(ctx, confs)
	if err != nil {
		return err
	}
	if err := r.refuse(ctx, w, refused); err != nil {
		return err
	}
	var targets []*target
	byID := make(map[string]*target)
	for _, d := range confs {
		t := byID[d.scope()]
		if t == nil {
			t = &target{id: d.scope()}
			byID[t.id] = t
			targets = append(targets, t)
		}
		t.add(d)
	}
	if len(dead) > 0 {
		if err := kafkax.WriteAll(ctx, w, r.log, dead...); err != nil {
			return err
		}
		r.deadLettered.Add(int64(len(dead)))
		if r.cfg.Metrics != nil {
			r.cfg.Metrics.DeadLettered(r.cfg.Topic, DLQMalformed, len(dead))
		}
	}
	// Requests are independent, so their signals go out concurrently; one
	// request's signals go in order.
	var g errgroup.Group
	g.SetLimit(r.cfg.Concurrency)
	for _, t := range targets {
		g.Go(func() error {
			for _, s := range t.signals {
				if err := r.send(ctx, t.id, s); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// send delivers one signal, retrying until Temporal accepts it or says no
// such workflow runs; in that case the confirmations are audited as late,
// one event each. id is the request's, or the chunk's for a batch
// confirmation.
func (r *Relay) send(ctx context.Context, id string, s *signal) error {
	late := false
	err := kafkax.Retry(ctx, r.log, "signal workflow", func(ctx context.Context) error {
		var err error
		late, err = signalOnce(ctx, r.sig, id, s)
		return err
	})
	if err != nil {
		return err
	}
	n := int64(s.len())
	scope := "request_id"
	if s.batch {
		scope = "batch_id"
	}
	if !late {
		r.signals.Add(1)
		if s.batch {
			r.batchConfirmations.Add(n)
		} else {
			r.confirmations.Add(n)
		}
		r.log.Debug("signaled", scope, id, "signal", s.name(), "confirmations", n)
		return nil
	}
	events := lateEvents(s, r.cfg.Now().UTC())
	if err := kafkax.Retry(ctx, r.log, "audit late confirmations", func(ctx context.Context) error {
		return r.aud.AppendAudit(ctx, events)
	}); err != nil {
		return err
	}
	r.late.Add(n)
	r.log.Info("confirmations arrived after their workflow ended", scope, id, "signal", s.name(), "confirmations", n)
	return nil
}

// lateEvents are the audit events of a signal's confirmations that no
// workflow waits for, one per confirmation, under its request or chunk.
// The detail of a batch confirmation counts its items, never naming them.
func lateEvents(s *signal, at time.Time) []lethe.AuditEvent {
	events := make([]lethe.AuditEvent, 0, s.len())
	for _, c := range s.confirmations {
		events = append(events, lethe.AuditEvent{
			RequestID: c.RequestID, System: c.System, Kind: lethe.AuditConfirmationLate, Detail: lateDetail, At: at,
		})
	}
	for _, c := range s.batches {
		events = append(events, lethe.AuditEvent{
			RequestID: c.BatchID, System: c.System, Kind: lethe.AuditConfirmationLate,
			Detail: fmt.Sprintf("%s: batch confirmation of %d items", lateDetail, len(c.Items)), At: at,
		})
	}
	return events
}

// signalOnce delivers one signal to the workflow of id; late is true when
// no such workflow runs.
func signalOnce(ctx context.Context, sig Signaler, id string, s *signal) (late bool, err error) {
	err = sig.SignalWorkflow(ctx, workflows.ErasureWorkflowID(id), "", s.name(), s.payload())
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return true, nil
	}
	return false, err
}

// SignalConfirmations delivers confirmations that passed their checks to
// their workflows as the relay does: one signal per request, in order, as
// few as the signal size allows. It tries each signal once, so that a
// caller who can answer its own client (the API, in pull mode) reports an
// outage rather than waiting it out; a request whose workflow no longer
// runs is no error, and its confirmations come back in late, to be audited
// with LateEvents. A confirmation that cannot be encoded is an error
// wrapping wire.ErrMalformed.
func SignalConfirmations(ctx context.Context, sig Signaler, confs []wire.Confirmation) (late []wire.Confirmation, err error) {
	var targets []*target
	byID := map[string]*target{}
	for _, c := range confs {
		size, err := encodedSize(c)
		if err != nil {
			return nil, err
		}
		t := byID[c.RequestID]
		if t == nil {
			t = &target{id: c.RequestID}
			byID[t.id] = t
			targets = append(targets, t)
		}
		t.add(decoded{conf: c, size: size})
	}
	for _, t := range targets {
		for _, s := range t.signals {
			gone, err := signalOnce(ctx, sig, t.id, s)
			if err != nil {
				return nil, err
			}
			if gone {
				late = append(late, s.confirmations...)
			}
		}
	}
	return late, nil
}

// LateEvents are the audit events of confirmations that found no running
// workflow (confirmation_late), one each, as the relay writes them.
func LateEvents(confs []wire.Confirmation, at time.Time) []lethe.AuditEvent {
	return lateEvents(&signal{confirmations: confs}, at)
}
