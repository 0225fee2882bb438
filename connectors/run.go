package connectors

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/lethe-dev/lethe/internal/kafkasec"
	"github.com/lethe-dev/lethe/wire"
)

// Config says where a service's commands are and how Run treats them. Only
// Brokers and System are required; every other field's zero value is a
// sensible default.
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
	// of DefaultDedupSize command ids. A service that runs several replicas
	// shares one store between them, such as NewPostgresDedup's.
	Dedup DedupStore
	// BatchSize bounds how many commands Run takes at once; their
	// confirmations go out in one acknowledged write and their offsets in
	// one commit. Default 100.
	BatchSize int
	// BatchWait is how long Run waits for more commands after the first of a
	// batch; default 2ms.
	BatchWait time.Duration
	// Concurrency bounds how many handler calls of one batch run at once.
	// Commands of different requests run in parallel; those of one request
	// (one message key) run one after the other, in their order on the
	// topic. The items of a batch command passed one by one to a plain
	// Handler run up to Concurrency at once too. Default
	// DefaultConcurrency; 1 handles one command at a time.
	Concurrency int
	// Retry says how a handler that returned an error is retried before
	// its command is confirmed failed and retryable; the zero value is the
	// default policy.
	Retry RetryPolicy
	// SessionTimeout is how long the consumer group waits for a heartbeat
	// from a replica before it gives that replica's partitions to the
	// others: the delay a replica killed without warning costs the
	// commands of its partitions. A replica that stops cleanly (its
	// context ends) leaves the group at once instead. Default
	// DefaultSessionTimeout; brokers refuse a session shorter than their
	// group.min.session.timeout.ms (6s unless lowered).
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the consumer tells the group it is
	// alive, and so how soon it learns that partitions move; at most a
	// third of SessionTimeout. Default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// RebalanceTimeout bounds how long the group waits for its replicas to
	// rejoin when partitions move. Default DefaultRebalanceTimeout.
	RebalanceTimeout time.Duration
	// ShutdownGrace is how long handler calls in flight when Run's context
	// ends may still take; afterwards their context is canceled and they
	// are abandoned, neither confirmed nor committed, for the group's next
	// consumer to take again. Zero means DefaultShutdownGrace; a negative
	// value cancels them at once.
	ShutdownGrace time.Duration
	// TLS, when set, encrypts every connection to the brokers (reader,
	// writer and topic administration) with this configuration.
	TLS *tls.Config
	// SASL, when set, authenticates every connection to the brokers with
	// this mechanism; SASL builds one from a mechanism's name.
	SASL sasl.Mechanism
	// KeyID and Secret are the service's signing credential, as POST
	// /v1/systems/{name}/credentials answered it (the secret as hex). When
	// both are empty, Run reads them from LETHE_CONNECTOR_KEY_ID and
	// LETHE_CONNECTOR_SECRET. With a credential, every command must carry
	// this key id and a valid signature (others are dead-lettered as
	// unsigned or bad_signature, never handled) and every confirmation is
	// signed. To rotate, issue a new credential and redeploy the service
	// with it within LETHE_CREDENTIAL_OVERLAP.
	KeyID  string
	Secret string
	// Observer receives Run's events for the service's metrics; nil means
	// none.
	Observer Observer
	// Now stamps confirmations; default time.Now.
	Now func() time.Time
	// DeferredCheck is how often Run looks for deferred commands that are
	// due (see Resumer); default DefaultDeferredCheck.
	DeferredCheck time.Duration
	// DeferredLease is how long a replica holds a deferred command it
	// resumes before another may take it over; Resume gets half of it.
	// Default DefaultDeferredLease.
	DeferredLease time.Duration

	// afterRecord, set only by tests, runs once a confirmation is recorded
	// in Dedup and before it is published: the window in which a consumer
	// that dies leaves its command to be answered from the store.
	afterRecord func(ctx context.Context, c wire.Confirmation)
	// tuneReader, set only by tests, adjusts the reader's configuration:
	// fault tests shorten the consumer group's timeouts below the
	// defaults.
	tuneReader func(*kafka.ReaderConfig)
}

// Defaults of Config's optional fields.
const (
	DefaultBatchSize     = 100
	DefaultBatchWait     = 2 * time.Millisecond
	DefaultConcurrency   = 8
	DefaultShutdownGrace = 10 * time.Second
	// DefaultSessionTimeout, DefaultHeartbeatInterval and
	// DefaultRebalanceTimeout let the group hand a lost replica's
	// partitions to the others within seconds; kafka-go's own defaults
	// take half a minute.
	DefaultSessionTimeout    = kafkasec.DefaultSessionTimeout
	DefaultHeartbeatInterval = kafkasec.DefaultHeartbeatInterval
	DefaultRebalanceTimeout  = kafkasec.DefaultRebalanceTimeout
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
	case c.Concurrency < 0:
		return errors.New("connectors: config: concurrency is negative")
	case c.DeferredCheck < 0:
		return errors.New("connectors: config: deferred check interval is negative")
	case c.DeferredLease < 0:
		return errors.New("connectors: config: deferred lease is negative")
	}
	for _, b := range c.Brokers {
		if b == "" {
			return errors.New("connectors: config: an empty broker address")
		}
	}
	if err := c.groupTimeouts().Validate(); err != nil {
		return fmt.Errorf("connectors: config: %w", err)
	}
	if _, err := newSigner(c.KeyID, c.Secret); err != nil {
		return err
	}
	return c.Retry.validate()
}

// groupTimeouts are c's consumer group timeouts; zero fields are defaults.
func (c Config) groupTimeouts() kafkasec.GroupTimeouts {
	return kafkasec.GroupTimeouts{Session: c.SessionTimeout, Heartbeat: c.HeartbeatInterval, Rebalance: c.RebalanceTimeout}
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
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	c.Retry = c.Retry.withDefaults()
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DeferredCheck == 0 {
		c.DeferredCheck = DefaultDeferredCheck
	}
	if c.DeferredLease == 0 {
		c.DeferredLease = DefaultDeferredLease
	}
	return c
}

// Run consumes the service's commands until ctx ends, calling h for each and
// sending its confirmation back. It returns nil once ctx is canceled and an
// error when the configuration is wrong or the topics cannot be set up
// (brokers unreachable, credentials refused).
//
// Delivery is at least once, and each command goes through the same steps:
// the handler erases; its confirmation is recorded in Config.Dedup; the
// confirmation is published and acknowledged by Kafka; the command's offset
// is committed. A consumer that dies anywhere before the commit leaves the
// command to be delivered again, to itself or another replica: recorded, it
// is answered from the store without calling h again, so a store shared by
// the replicas (NewPostgresDedup) makes sure a redelivered command is not
// erased twice. A store may forget, so h must be idempotent all the same.
// A failure the handler marked retryable is never recorded, so that
// Lethe's re-dispatch reaches the handler again.
//
// Commands are taken in batches (Config.BatchSize). Within a batch, those of
// different requests are handled in parallel (Config.Concurrency) and those
// of one request in order; the batch's confirmations are written and its
// offsets committed once every command of it is handled.
//
// A handler error is retried in the process (Config.Retry), then becomes a
// retryable failure; an error wrapped by Permanent becomes a definitive
// failure at once. A panic in h is recovered and confirmed as a retryable
// failure without an immediate retry: a bug does not go away in
// milliseconds, but Lethe's later re-dispatch may meet a fixed release.
// The detail of these failures is a fixed text, since the error may quote
// identifier values; only its Go type is logged.
//
// A command that cannot be decoded, breaks the contract, is addressed to
// another system or, with a signing credential, is unsigned or badly signed
// goes to the topic's dead-letter topic, with the reason in the
// wire.HeaderDLQReason header, and its offset is committed.
//
// When ctx ends, Run stops fetching and starts no new handler call. Calls in
// flight have Config.ShutdownGrace to finish; then their context is
// canceled and they are abandoned. The confirmations of the finished
// commands are published and committed; the abandoned ones are not, and
// the group's next consumer receives them again. Publishing and committing
// have a few more seconds after the grace; a handler that ignores its
// context's end is then left running, and Run returns all the same.
//
// Batch commands (wire.SchemaBatchCommand, told apart by the
// wire.HeaderSchema header or else the body's schema field) take the same
// path. A handler that implements BatchHandler erases their items in one
// call; any other Handler gets each item as a Request of its own, up to
// Config.Concurrency at once, with the same retries. The items' outcomes go
// back in one batch confirmation, or several when one message cannot carry
// them. Each item is recorded in Config.Dedup under ItemCommandID, so a
// repeated batch command is answered from the store for every item that did
// not fail, and only the failed ones are erased again. The Observer hears of
// each item as of a command.
//
// A Resumer's command that its Erase deferred (Later) is recorded in
// Config.Dedup and committed without a confirmation; Run resumes it in the
// background, from the store, so after a restart too, and confirms it once
// Resume answers (see Resumer). This needs a store of the SDK; with another
// one, CanDefer is false and the handler finishes within Erase.
//
// Run creates its command topic and the dead-letter topic when they are
// missing; the confirmations topic is Lethe's and must exist.
func Run(ctx context.Context, cfg Config, h Handler) error {
	if h == nil {
		return errors.New("connectors: nil handler")
	}
	if cfg.KeyID == "" && cfg.Secret == "" {
		cfg.KeyID, cfg.Secret = os.Getenv(EnvKeyID), os.Getenv(EnvSecret)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	sg, _ := newSigner(cfg.KeyID, cfg.Secret) // checked by Validate
	sec := kafkasec.New(cfg.TLS, cfg.SASL)
	defer sec.Close()
	if err := kafkasec.EnsureTopics(ctx, cfg.Brokers, sec, DefaultPartitions, cfg.Topic, wire.DLQTopic(cfg.Topic)); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if authErr := sec.Check(ctx, cfg.Brokers); errors.Is(authErr, kafka.SASLAuthenticationFailed) {
			return fmt.Errorf("connectors: the brokers refused the SASL credentials: %w", authErr)
		}
		return fmt.Errorf("connectors: %w", err)
	}
	c := &consumer{
		cfg: cfg,
		h:   h,
		log: cfg.Logger.With("system", cfg.System, "topic", cfg.Topic),
		r:   kafkasec.NewReader(cfg.Brokers, cfg.GroupID, cfg.Topic, cfg.Logger, sec, cfg.groupTimeouts(), cfg.tuneReader),
		w:   kafkasec.NewWriter(cfg.Brokers, sec),
		sg:  sg,
		ds:  deferrer(cfg, h),
	}
	defer c.close()
	c.log.Info("connector started", "group", cfg.GroupID, "concurrency", cfg.Concurrency, "signed", sg != nil, "defers", c.ds != nil)
	var wg sync.WaitGroup
	if c.ds != nil {
		if f, ok := h.(Finisher); ok {
			f.AttachFinish(c.finish)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.resumeLoop(ctx)
		}()
	}
	c.run(ctx)
	wg.Wait()
	c.log.Info("connector stopped")
	return nil
}

type consumer struct {
	cfg Config
	h   Handler
	log *slog.Logger
	r   *kafka.Reader
	w   *kafka.Writer
	// sg checks commands and signs confirmations; nil without a credential.
	sg *signer
	// ds keeps deferred commands; nil when h is no Resumer or the store
	// cannot keep them.
	ds deferStore
}

func (c *consumer) close() {
	if err := c.r.Close(); err != nil {
		c.log.Warn("close reader", "error", err.Error())
	}
	if err := c.w.Close(); err != nil {
		c.log.Warn("close writer", "error", err.Error())
	}
}

// run handles batch after batch until ctx ends. A batch is fetched under
// ctx, so fetching stops with it; handler calls run under hctx, which
// outlives ctx by the shutdown grace; recording, publishing and committing
// what was handled run under dctx, which outlives hctx by
// finalCommitTimeout, so that finished work is kept while a dead broker
// cannot hold the shutdown forever.
func (c *consumer) run(ctx context.Context) {
	hctx, dctx, release := shutdownContexts(ctx, c.cfg.ShutdownGrace)
	defer release()
	for {
		var batch []kafka.Message
		if err := Retry(ctx, c.log, "fetch", func(ctx context.Context) error {
			var err error
			batch, err = fetchBatch(ctx, c.r, c.cfg.BatchSize, c.cfg.BatchWait)
			return err
		}); err != nil {
			return
		}
		results, ok := c.handle(ctx, hctx, dctx, batch)
		if !ok || !c.settle(dctx, batch, results) || ctx.Err() != nil {
			return
		}
	}
}

// shutdownContexts returns the handler context and the drain context of run.
// Neither ends before ctx; once it has, hctx ends after grace and dctx
// finalCommitTimeout later.
func shutdownContexts(ctx context.Context, grace time.Duration) (hctx, dctx context.Context, release func()) {
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	dctx, dcancel := context.WithCancel(context.WithoutCancel(ctx))
	grace = max(grace, 0)
	var (
		mu     sync.Mutex
		timers []*time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timers = append(timers, time.AfterFunc(grace, hcancel), time.AfterFunc(grace+finalCommitTimeout, dcancel))
	})
	release = func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		for _, t := range timers {
			t.Stop()
		}
		hcancel()
		dcancel()
	}
	return hctx, dctx, release
}

// result is what became of one message of a batch: done with the message
// to publish (its confirmation or dead letter), or abandoned at shutdown.
type result struct {
	msg kafka.Message
	// more holds the further parts of a batch confirmation too large for
	// one message.
	more []kafka.Message
	done bool
	// none says there is nothing to publish: the command was deferred,
	// and its confirmation comes later.
	none bool
}

// keyed is the commands of one request (or batch commands of one bulk
// erasure) within a batch, in their order, with their positions in the
// batch. Exactly one of cmds[j] and batches[j] is set.
type keyed struct {
	cmds    []wire.Command
	batches []*wire.BatchCommand
	at      []int
}

// handle works out the result of each message of batch. Malformed messages
// are dead-lettered at once; the commands are grouped by request, and the
// groups handled in parallel up to the configured concurrency. ok is false
// when dctx ended before every group was through.
func (c *consumer) handle(ctx, hctx, dctx context.Context, batch []kafka.Message) (results []result, ok bool) {
	results = make([]result, len(batch))
	var groups []*keyed
	byRequest := make(map[string]*keyed)
	for i, m := range batch {
		if c.sg != nil {
			if reason, detail := c.sg.check(m); reason != "" {
				results[i] = result{msg: c.deadLetter(m, reason, detail), done: true}
				continue
			}
		}
		var (
			cmd    wire.Command
			bc     *wire.BatchCommand
			key    string
			system string
			err    error
		)
		if messageSchema(m) == wire.SchemaBatchCommand {
			var b wire.BatchCommand
			b, err = wire.DecodeBatchCommand(m.Value)
			bc, key, system = &b, b.BatchID, b.System
		} else {
			cmd, err = wire.DecodeCommand(m.Value)
			key, system = cmd.RequestID, cmd.System
		}
		reason := DLQMalformed
		if err == nil && system != c.cfg.System {
			err = fmt.Errorf("command is addressed to system %q, not %q", system, c.cfg.System)
			reason = DLQOtherSystem
		}
		if err != nil {
			results[i] = result{msg: c.deadLetter(m, reason, err.Error()), done: true}
			continue
		}
		g := byRequest[key]
		if g == nil {
			g = &keyed{}
			byRequest[key] = g
			groups = append(groups, g)
		}
		g.cmds = append(g.cmds, cmd)
		g.batches = append(g.batches, bc)
		g.at = append(g.at, i)
	}

	finished := make(chan struct{})
	go func() {
		defer close(finished)
		slots := make(chan struct{}, c.cfg.Concurrency)
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, g := range groups {
			select {
			case slots <- struct{}{}:
			case <-dctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				c.handleRequest(ctx, hctx, dctx, batch, g, results)
			}()
		}
	}()
	// A handler that ignores its context's end would hold the shutdown
	// forever: at the drain deadline Run stops waiting and leaves it
	// running, its batch neither published nor committed.
	select {
	case <-finished:
		return results, true
	case <-dctx.Done():
		c.log.Error("handler calls still running at the shutdown deadline; they ignore their context's end")
		return nil, false
	}
}

// handleRequest handles one request's commands of a batch in order. Once
// one is abandoned, so are the rest: handling them would break the order.
func (c *consumer) handleRequest(ctx, hctx, dctx context.Context, batch []kafka.Message, g *keyed, results []result) {
	// A command repeated within the batch is answered like its twin, even
	// when the store failed to record it.
	twins := &twinMap{m: make(map[string]wire.Confirmation)}
	for j, cmd := range g.cmds {
		if ctx.Err() != nil {
			return // shutting down: start nothing new
		}
		if bc := g.batches[j]; bc != nil {
			r, ok := c.handleBatch(ctx, hctx, dctx, batch[g.at[j]], bc, twins)
			if !ok {
				return
			}
			results[g.at[j]] = r
			continue
		}
		conf, deferred, ok := c.answer(ctx, hctx, dctx, cmd, twins, c.ds != nil)
		if !ok {
			return
		}
		i := g.at[j]
		if deferred {
			results[i] = result{done: true, none: true}
			continue
		}
		msg, err := EncodeConfirmation(conf)
		switch {
		case err != nil:
			msg = c.deadLetter(batch[i], DLQUnencodable, "cannot encode the confirmation of this command")
		case c.sg != nil:
			msg = c.sg.sign(msg)
		}
		results[i] = result{msg: msg, done: true}
	}
}

// answer returns cmd's confirmation: a recorded one if there is, else the
// handler's, recorded before it is returned. deferred says there is none
// yet: the handler deferred its work (see Resumer), now or at an earlier
// delivery; only when mayDefer, which the items of a batch command are not.
// ok is false when cmd was abandoned at shutdown.
func (c *consumer) answer(ctx, hctx, dctx context.Context, cmd wire.Command, twins *twinMap, mayDefer bool) (conf wire.Confirmation, deferred, ok bool) {
	conf, found := twins.get(cmd.CommandID)
	if !found {
		conf, found = c.recorded(hctx, cmd)
	}
	if found {
		c.cfg.Observer.CommandDuplicate(c.cfg.System)
		c.log.Debug("command answered with its recorded confirmation", "request_id", cmd.RequestID, "attempt", cmd.Attempt)
		return conf, false, true
	}
	if mayDefer && c.isDeferred(hctx, cmd) {
		c.cfg.Observer.CommandDuplicate(c.cfg.System)
		c.log.Debug("command is deferred already; its confirmation comes when it is resumed", "request_id", cmd.RequestID, "attempt", cmd.Attempt)
		return wire.Confirmation{}, true, true
	}
	conf, l, ok := c.erase(ctx, hctx, cmd, mayDefer)
	if !ok {
		return wire.Confirmation{}, false, false
	}
	if l != nil {
		return wire.Confirmation{}, true, c.deferCommand(dctx, cmd, l)
	}
	if replayable(conf) {
		conf = c.record(dctx, cmd, conf)
		twins.put(conf)
	}
	return conf, false, true
}

// twinMap holds the replayable confirmations given within one request's
// commands of a batch, by command id; the items of a batch command adapted
// to a Handler use it from several goroutines.
type twinMap struct {
	mu sync.Mutex
	m  map[string]wire.Confirmation
}

func (t *twinMap) get(commandID string) (wire.Confirmation, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	conf, ok := t.m[commandID]
	return conf, ok
}

func (t *twinMap) put(conf wire.Confirmation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[conf.CommandID] = conf
}

// replayable reports whether conf may answer a repeated command. A failure
// must not, retryable or not: Lethe sends a command that failed again only
// so that the handler tries again, when the handler asked for it or when an
// operator retried the request (POST /v1/erasures/{id}/retry) once the
// cause was mended.
func replayable(conf wire.Confirmation) bool { return conf.Outcome != wire.OutcomeFailed }

func (c *consumer) recorded(ctx context.Context, cmd wire.Command) (wire.Confirmation, bool) {
	conf, found, err := c.cfg.Dedup.Get(ctx, cmd.CommandID)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("look up confirmation", "request_id", cmd.RequestID, "error_type", errorType(err))
		}
		return wire.Confirmation{}, false
	}
	if !found || !answers(conf, cmd) || !replayable(conf) {
		return wire.Confirmation{}, false
	}
	return conf, true
}

// answers reports whether conf was sent for cmd: a recorded confirmation
// answers only the very command it was sent for.
func answers(conf wire.Confirmation, cmd wire.Command) bool {
	return conf.CommandID == cmd.CommandID && conf.RequestID == cmd.RequestID && conf.System == cmd.System
}

// record stores conf in the dedup store before it is published, and
// returns the confirmation to publish: conf, or the one another replica
// recorded first in a shared store that keeps the first.
func (c *consumer) record(ctx context.Context, cmd wire.Command, conf wire.Confirmation) wire.Confirmation {
	if s, ok := c.cfg.Dedup.(firstKeeper); ok {
		stored, err := s.putFirst(ctx, conf)
		switch {
		case err != nil:
			c.log.Warn("record confirmation", "request_id", cmd.RequestID, "error_type", errorType(err))
		case answers(stored, cmd) && replayable(stored):
			conf = stored
		}
	} else if err := c.cfg.Dedup.Put(ctx, conf); err != nil {
		// Forgetting costs one more idempotent call of the handler.
		c.log.Warn("record confirmation", "request_id", cmd.RequestID, "error_type", errorType(err))
	}
	if c.cfg.afterRecord != nil {
		c.cfg.afterRecord(ctx, conf)
	}
	return conf
}

func (c *consumer) deadLetter(m kafka.Message, kind, reason string) kafka.Message {
	c.log.Warn("command dead-lettered", "partition", m.Partition, "offset", m.Offset, "reason", reason)
	c.cfg.Observer.CommandDeadLettered(c.cfg.System, kind)
	return DeadLetter(m, reason)
}

// erase calls the handler under hctx, retrying its errors, and builds the
// confirmation, or returns l when the handler deferred its work. ok is
// false when the command was abandoned, since a handler cut short by
// shutdown did not fail: hctx ended during a call that failed, or ctx
// (Run's) ended before a retry, which is a new call.
func (c *consumer) erase(ctx, hctx context.Context, cmd wire.Command, mayDefer bool) (conf wire.Confirmation, l *later, ok bool) {
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
	if mayDefer {
		hctx = context.WithValue(hctx, canDeferKey{}, true)
	}
	start := time.Now()
	res, calls, ok, err := callHandler(ctx, hctx, c.h, req, c.cfg.Retry, func(calls int, delay time.Duration, err error) {
		c.log.Warn("handler failed; retrying", "request_id", cmd.RequestID, "attempt", cmd.Attempt,
			"call", calls, "delay", delay, "error_type", errorType(err))
		c.cfg.Observer.HandlerRetried(c.cfg.System)
	})
	if !ok {
		return wire.Confirmation{}, nil, false
	}
	switch {
	case err == nil && res.later != nil && mayDefer:
		return wire.Confirmation{}, res.later, true
	case err == nil && res.later != nil:
		c.log.Error("handler returned Later, which Run cannot keep here (see CanDefer)", "request_id", cmd.RequestID)
		conf = NewConfirmation(cmd, Result{Outcome: wire.OutcomeFailed, Detail: detailInvalidResult + "deferred where it cannot be"}, c.cfg.Now())
	case err == nil:
		conf = NewConfirmation(cmd, res, c.cfg.Now())
		if conf.Detail == detailInvalidOutcome || strings.HasPrefix(conf.Detail, detailInvalidResult) {
			c.log.Error("handler returned an invalid result", "request_id", cmd.RequestID, "detail", conf.Detail)
		}
	case isPermanent(err):
		c.log.Error("handler failed permanently", "request_id", cmd.RequestID, "attempt", cmd.Attempt, "error_type", errorType(err))
		conf = NewConfirmation(cmd, Result{Outcome: wire.OutcomeFailed, Detail: detailHandlerFailedPermanently}, c.cfg.Now())
	default:
		c.log.Error("handler failed", "request_id", cmd.RequestID, "attempt", cmd.Attempt, "calls", calls, "error_type", errorType(err))
		conf = NewConfirmation(cmd, Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailHandlerFailed}, c.cfg.Now())
	}
	d := time.Since(start)
	c.cfg.Observer.CommandHandled(c.cfg.System, conf.Outcome, calls, d)
	c.log.Debug("command handled", "request_id", cmd.RequestID, "attempt", cmd.Attempt,
		"outcome", string(conf.Outcome), "records", conf.Records, "calls", calls, "duration", d)
	return conf, nil, true
}

// callHandler calls h with req under hctx until it succeeds, fails for good
// (an error wrapped by Permanent, a panic) or has been called
// policy.MaxAttempts times, waiting policy's delay between calls; retrying,
// when set, hears of each retry before its wait. ok is false when the call
// was cut short rather than failed: hctx ended during a call that failed,
// or ctx ended before a call, since a retry is a new call.
func callHandler(ctx, hctx context.Context, h Handler, req Request, policy RetryPolicy,
	retrying func(calls int, delay time.Duration, err error)) (res Result, calls int, ok bool, err error) {
	return retryCall(ctx, hctx, policy, retrying, func(hctx context.Context) (Result, error) { return call(hctx, h, req) })
}

// retryCall is callHandler's loop around any call of a handler, which must
// turn its panics into a panicError.
func retryCall[T any](ctx, hctx context.Context, policy RetryPolicy, retrying func(calls int, delay time.Duration, err error),
	f func(context.Context) (T, error)) (res T, calls int, ok bool, err error) {
	var zero T
	for {
		if ctx.Err() != nil || hctx.Err() != nil {
			return zero, calls, false, nil
		}
		calls++
		res, err = f(hctx)
		if err != nil && hctx.Err() != nil {
			return zero, calls, false, nil
		}
		if err == nil || calls >= policy.MaxAttempts || isPermanent(err) || isPanic(err) {
			return res, calls, true, err
		}
		delay := policy.delay(calls)
		if retrying != nil {
			retrying(calls, delay, err)
		}
		if !sleep(ctx, delay) {
			return zero, calls, false, nil
		}
	}
}

// call runs the handler, turning a panic into an error so that one bad
// command cannot take the service down with it.
func call(ctx context.Context, h Handler, req Request) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{kind: fmt.Sprintf("%T", p)}
		}
	}()
	return h.Erase(ctx, req)
}

// settle publishes what the batch's handled commands produced, then commits
// the offsets that may be: on each partition, those before the first
// abandoned command, since committing an offset commits all before it. It
// reports false when ctx ended first; nothing more is committed then, and
// the batch comes again.
func (c *consumer) settle(ctx context.Context, batch []kafka.Message, results []result) bool {
	var out []kafka.Message
	for _, r := range results {
		if r.done && !r.none {
			out = append(out, r.msg)
			out = append(out, r.more...)
		}
	}
	// Checked first because kafka-go may still send what it was given
	// with a context that has ended: past the deadline, nothing goes out.
	if ctx.Err() != nil {
		c.log.Warn("shutdown deadline passed before the confirmations were written; the batch will be delivered again")
		return false
	}
	if err := WriteAll(ctx, c.w, c.log, out...); err != nil {
		c.log.Warn("shutdown deadline passed before the confirmations were written; the batch will be delivered again")
		return false
	}
	var commit []kafka.Message
	stopped := make(map[int]bool)
	abandoned := 0
	for i, m := range batch {
		if !results[i].done {
			stopped[m.Partition] = true
			abandoned++
		}
		if !stopped[m.Partition] {
			commit = append(commit, m)
		}
	}
	if len(stopped) > 0 {
		c.log.Info("commands abandoned at shutdown; they will be delivered again", "abandoned", abandoned)
	}
	if len(commit) == 0 {
		return true
	}
	if err := Retry(ctx, c.log, "commit offsets", func(ctx context.Context) error {
		return c.r.CommitMessages(ctx, commit...)
	}); err != nil {
		c.log.Warn("shutdown deadline passed before the offsets were committed; the batch will be delivered again")
		return false
	}
	return true
}

type panicError struct{ kind string }

func (e *panicError) Error() string { return "handler panicked with a " + e.kind }

func isPanic(err error) bool {
	var pe *panicError
	return errors.As(err, &pe)
}

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
