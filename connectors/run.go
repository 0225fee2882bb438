package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// Config says where a service's commands are and how Run treats them. Only
// Brokers and System are required.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// System is the service's name in Lethe's registry. Commands addressed
	// to another system are dead-lettered.
	System string
	// Topic is where the service's commands arrive; default
	// wire.DefaultTopic(System).
	Topic string
	// GroupID is the Kafka consumer group, shared by the service's replicas;
	// default "lethe-connector-" + System.
	GroupID string
	// Logger receives the SDK's logs, which never carry identifier values;
	// default slog.Default().
	Logger *slog.Logger
	// Dedup remembers confirmations already sent; default an in-memory store
	// of DefaultDedupSize command ids.
	Dedup DedupStore
	// BatchSize bounds how many commands Run takes at once; their
	// confirmations go out in one acknowledged write and their offsets in
	// one commit. Default 100.
	BatchSize int
	// BatchWait is how long Run waits for more commands after the first of a
	// batch; default 2ms.
	BatchWait time.Duration
	// Now stamps confirmations; default time.Now.
	Now func() time.Time
}

// Defaults of Config's optional fields.
const (
	DefaultBatchSize = 100
	DefaultBatchWait = 2 * time.Millisecond
	// GroupPrefix prefixes the default consumer group of a system.
	GroupPrefix = "lethe-connector-"
)

// Validate reports the first problem of c, so that a misconfigured service
// fails at start instead of consuming nothing or everything.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("connectors: config: no brokers")
	case !wire.ValidSystemName(c.System):
		return fmt.Errorf("connectors: config: system %q is not a valid system name", c.System)
	case c.Topic != "" && !validTopic(c.Topic):
		return fmt.Errorf("connectors: config: %q is not a valid topic name", c.Topic)
	case c.BatchSize < 0:
		return errors.New("connectors: config: batch size is negative")
	case c.BatchWait < 0:
		return errors.New("connectors: config: batch wait is negative")
	}
	for _, b := range c.Brokers {
		if b == "" {
			return errors.New("connectors: config: an empty broker address")
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = wire.DefaultTopic(c.System)
	}
	if c.GroupID == "" {
		c.GroupID = GroupPrefix + c.System
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dedup == nil {
		c.Dedup = NewMemoryDedup(DefaultDedupSize)
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Run consumes the service's commands until ctx ends, calling h for each and
// sending its confirmation back. It returns nil once ctx is canceled and an
// error when the configuration is wrong or the topics cannot be set up.
//
// Delivery is at least once: a command's offset is committed only after its
// confirmation is acknowledged by Kafka, so a crash in between means the
// command comes again, and h must be idempotent. A command already confirmed
// definitively (recorded in Config.Dedup) is answered with the recorded
// confirmation without calling h; a failure the handler marked retryable is
// not recorded, so Lethe's re-dispatch reaches the handler again. A command
// that cannot be decoded, breaks the contract or is addressed to another
// system goes to the topic's dead-letter topic, with the reason in the
// wire.HeaderDLQReason header. A handler error becomes a retryable failure
// whose detail is a fixed text, since the error may quote identifier values;
// only its type is logged.
//
// Run creates its command topic and the dead-letter topic when they are
// missing; the confirmations topic is Lethe's and must exist.
func Run(ctx context.Context, cfg Config, h Handler) error {
	if h == nil {
		return errors.New("connectors: nil handler")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if err := EnsureTopics(ctx, cfg.Brokers, DefaultPartitions, cfg.Topic, wire.DLQTopic(cfg.Topic)); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("connectors: %w", err)
	}
	c := &consumer{
		cfg: cfg,
		h:   h,
		log: cfg.Logger.With("system", cfg.System, "topic", cfg.Topic),
		r:   NewReader(cfg.Brokers, cfg.GroupID, cfg.Topic, cfg.Logger),
		w:   NewWriter(cfg.Brokers),
	}
	defer c.close()
	c.log.Info("connector started", "group", cfg.GroupID)
	err := c.run(ctx)
	c.log.Info("connector stopped")
	if err != nil {
		return fmt.Errorf("connectors: %w", err)
	}
	return nil
}

type consumer struct {
	cfg Config
	h   Handler
	log *slog.Logger
	r   *kafka.Reader
	w   *kafka.Writer
}

func (c *consumer) close() {
	if err := c.r.Close(); err != nil {
		c.log.Warn("close reader", "error", err.Error())
	}
	if err := c.w.Close(); err != nil {
		c.log.Warn("close writer", "error", err.Error())
	}
}

// run handles batch after batch until ctx ends.
func (c *consumer) run(ctx context.Context) error {
	return Consume(ctx, c.r, c.cfg.BatchSize, c.cfg.BatchWait, c.log, func(ctx context.Context, msgs []kafka.Message) error {
		out, fresh, ok := c.handle(ctx, msgs)
		if !ok {
			return ctx.Err()
		}
		if err := WriteAll(ctx, c.w, c.log, out...); err != nil {
			return err
		}
		for _, conf := range fresh {
			if err := c.cfg.Dedup.Put(ctx, conf); err != nil {
				// Forgetting costs one more idempotent call of the handler.
				c.log.Warn("record confirmation", "request_id", conf.RequestID, "error_type", errorType(err))
			}
		}
		return nil
	})
}

// handle turns a batch of commands into the messages to write (confirmations
// and dead letters, in the batch's order) and the confirmations to record
// once written. ok is false when ctx ended during a handler call: nothing of
// the batch may then be written or committed.
func (c *consumer) handle(ctx context.Context, msgs []kafka.Message) (out []kafka.Message, fresh []wire.Confirmation, ok bool) {
	// Within a batch a duplicate must see its twin's confirmation, which is
	// recorded in the store only after the batch is written.
	batch := make(map[string]wire.Confirmation)
	for _, m := range msgs {
		cmd, err := wire.DecodeCommand(m.Value)
		if err == nil && cmd.System != c.cfg.System {
			err = fmt.Errorf("command is addressed to system %q, not %q", cmd.System, c.cfg.System)
		}
		if err != nil {
			out = append(out, c.deadLetter(m, err.Error()))
			continue
		}
		conf, found := batch[cmd.CommandID]
		if !found {
			conf, found = c.recorded(ctx, cmd)
		}
		if !found {
			conf, ok = c.erase(ctx, cmd)
			if !ok {
				return nil, nil, false
			}
			if replayable(conf) {
				fresh = append(fresh, conf)
			}
		}
		if replayable(conf) {
			batch[cmd.CommandID] = conf
		}
		msg, err := EncodeConfirmation(conf)
		if err != nil {
			out = append(out, c.deadLetter(m, "cannot encode the confirmation of this command"))
			continue
		}
		out = append(out, msg)
	}
	return out, fresh, true
}

// replayable reports whether conf may answer a repeated command. A failure
// the handler asked to retry must not: Lethe re-dispatches the same command
// id precisely so that the handler tries again.
func replayable(conf wire.Confirmation) bool { return !conf.Retryable }

func (c *consumer) recorded(ctx context.Context, cmd wire.Command) (wire.Confirmation, bool) {
	conf, found, err := c.cfg.Dedup.Get(ctx, cmd.CommandID)
	if err != nil {
		c.log.Warn("look up confirmation", "request_id", cmd.RequestID, "error_type", errorType(err))
		return wire.Confirmation{}, false
	}
	// A recorded confirmation answers only the very command it was sent for.
	if !found || conf.RequestID != cmd.RequestID || conf.System != cmd.System || !replayable(conf) {
		return wire.Confirmation{}, false
	}
	return conf, true
}

func (c *consumer) deadLetter(m kafka.Message, reason string) kafka.Message {
	c.log.Warn("command dead-lettered", "partition", m.Partition, "offset", m.Offset, "reason", reason)
	return DeadLetter(m, reason)
}

// erase calls the handler and builds the confirmation; ok is false when ctx
// ended meanwhile, since a handler cut short by shutdown did not fail.
func (c *consumer) erase(ctx context.Context, cmd wire.Command) (conf wire.Confirmation, ok bool) {
	req := Request{
		CommandID:   cmd.CommandID,
		RequestID:   cmd.RequestID,
		System:      cmd.System,
		Attempt:     cmd.Attempt,
		Identifiers: cmd.Identifiers,
		DryRun:      cmd.DryRun,
		IssuedAt:    cmd.IssuedAt,
		ConfirmBy:   cmd.ConfirmBy,
	}
	res, err := c.call(ctx, req)
	if ctx.Err() != nil {
		return wire.Confirmation{}, false
	}
	if err != nil {
		c.log.Error("handler failed", "request_id", cmd.RequestID, "attempt", cmd.Attempt, "error_type", errorType(err))
		res = Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailHandlerFailed}
	}
	conf = NewConfirmation(cmd, res, c.cfg.Now())
	if err == nil && (conf.Detail == detailInvalidOutcome || strings.HasPrefix(conf.Detail, detailInvalidResult)) {
		c.log.Error("handler returned an invalid result", "request_id", cmd.RequestID, "detail", conf.Detail)
	}
	return conf, true
}

// call runs the handler, turning a panic into an error so that one bad
// command cannot take the service down with it.
func (c *consumer) call(ctx context.Context, req Request) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{kind: fmt.Sprintf("%T", p)}
		}
	}()
	return c.h.Erase(ctx, req)
}

type panicError struct{ kind string }

func (e *panicError) Error() string { return "handler panicked with a " + e.kind }

// errorType names the innermost error of err's chain by its Go type: enough
// to tell a timeout from a constraint violation, without the message, which
// may quote identifier values.
func errorType(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	if pe, ok := err.(*panicError); ok {
		return "panic(" + pe.kind + ")"
	}
	return fmt.Sprintf("%T", err)
}
