package connectortest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// Bounds of the kit's own waiting. They are generous on purpose: they only
// decide how long a broken handler takes to fail, never whether a correct
// one passes.
const (
	// setupTimeout bounds starting the broker and the confirmation readers.
	setupTimeout = time.Minute
	// cancelGrace is how long Erase may take to return once its context
	// is canceled.
	cancelGrace = 5 * time.Second
	// stopGrace is how long a check waits for its connector to stop, and
	// stuckGrace how long when the handler is still running: one that
	// honours its context returns at once, one that does not never will.
	stopGrace  = 5 * time.Second
	stuckGrace = 500 * time.Millisecond
	// abandonGrace is how long a check may overrun its timeout before the
	// kit stops waiting for it.
	abandonGrace = 10 * time.Second
	// cleanupTimeout bounds deleting the kit's topics from a real cluster.
	cleanupTimeout = 10 * time.Second
)

// env is one run of the kit: the broker, the reader of the confirmations
// topic, and the writer of commands that every check shares.
type env struct {
	cfg     Config
	brokers []string
	cluster *kfake.Cluster // the kit's own broker; nil on a real cluster
	log     *slog.Logger
	w       *kafka.Writer
	feed    *feed
	runID   string // names this run's topics and groups
	seq     atomic.Int64

	mu     sync.Mutex
	topics []string // created on a real cluster, deleted by close
}

func start(ctx context.Context, cfg Config) (_ *env, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	e := &env{
		cfg:     cfg,
		brokers: cfg.Brokers,
		log:     slog.New(slog.DiscardHandler),
		runID:   uuid.NewString()[:8],
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if len(e.brokers) == 0 {
		e.cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(connectors.DefaultPartitions))
		if err != nil {
			return nil, fmt.Errorf("start an in-process broker: %w", err)
		}
		e.brokers = e.cluster.ListenAddrs()
	}
	// Lethe owns the confirmations topic; on the kit's own broker nobody
	// else creates it.
	if err := connectors.EnsureTopics(ctx, e.brokers, connectors.DefaultPartitions, wire.ConfirmationsTopic); err != nil {
		return nil, fmt.Errorf("set up the confirmations topic: %w", err)
	}
	e.w = connectors.NewWriter(e.brokers)
	if e.feed, err = startFeed(ctx, e.brokers); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.feed != nil {
		e.feed.close()
	}
	if e.w != nil {
		e.w.Close()
	}
	if e.cluster != nil {
		e.cluster.Close()
		return
	}
	e.mu.Lock()
	topics := e.topics
	e.mu.Unlock()
	if len(topics) > 0 {
		// Best effort, errors ignored: topics left behind cost a real
		// cluster little, and one may forbid deleting them.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		client := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	}
}

// check is one named check; run returns what the service must fix, or nil.
type check struct {
	name string
	run  func(ctx context.Context, e *env) error
}

func (e *env) checks() []check {
	cs := []check{
		{CheckEraseLeavesNothing, checkEraseLeavesNothing},
		{CheckRepeatedCommand, checkRepeatedCommand},
		{CheckUnknownSubject, checkUnknownSubject},
		{CheckDryRun, checkDryRun},
		{CheckCancellation, checkCancellation},
		{CheckSignedMessages, checkSignedMessages},
	}
	if e.cfg.Batch {
		cs = append(cs, check{CheckBatchPartial, checkBatchPartialFailure}, check{CheckBatchRepeated, checkBatchRepeated},
			check{CheckBatchDryRun, checkBatchDryRun})
	}
	if e.cfg.RevealsDerived {
		cs = append(cs, check{CheckDerived, checkDerived})
	}
	return cs
}

// run runs c within the configured timeout. The checks wait on nothing but
// their context, so they end soon after it; should one still hang, it is
// abandoned rather than allowed to hang the test.
func (e *env) run(ctx context.Context, c check) *Failure {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("the check panicked: %v", p)
			}
		}()
		done <- c.run(ctx, e)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t := time.NewTimer(abandonGrace)
		defer t.Stop()
		select {
		case err = <-done:
		case <-t.C:
			err = fmt.Errorf("the check did not finish within %s: Erase, Seed or Remaining does not return when its context is canceled", e.cfg.Timeout)
		}
	}
	if err == nil {
		return nil
	}
	return &Failure{Check: c.name, Problem: err.Error()}
}

// subject returns a fresh subject and a command for it, checking that the
// subject can travel on the wire.
func (e *env) subject(dryRun bool) (Subject, wire.Command, error) {
	s := e.cfg.NewSubject()
	cmd, err := e.command(s, dryRun)
	return s, cmd, err
}

// command builds a command for s as Lethe's dispatch would: new random ids,
// attempt 1, a deadline three days out.
func (e *env) command(s Subject, dryRun bool) (wire.Command, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	cmd := wire.Command{
		Schema:      wire.SchemaCommand,
		CommandID:   uuid.NewString(),
		RequestID:   uuid.NewString(),
		System:      e.cfg.System,
		Attempt:     1,
		Identifiers: slices.Clone(s.Identifiers),
		IssuedAt:    now,
		ConfirmBy:   now.Add(72 * time.Hour),
		DryRun:      dryRun,
	}
	if err := cmd.Validate(); err != nil {
		return wire.Command{}, fmt.Errorf("NewSubject returned a subject no command can carry (%w): give it at least one identifier of a valid type with a non-empty value", err)
	}
	return cmd, nil
}

// seeded returns a fresh subject with data in the service, a command to
// erase it, and how many records Remaining counts for it.
func (e *env) seeded(ctx context.Context, dryRun bool) (Subject, wire.Command, int64, error) {
	s, cmd, err := e.subject(dryRun)
	if err != nil {
		return Subject{}, wire.Command{}, 0, err
	}
	if err := e.seed(ctx, s); err != nil {
		return Subject{}, wire.Command{}, 0, err
	}
	n, err := e.remaining(ctx, s)
	if err != nil {
		return Subject{}, wire.Command{}, 0, err
	}
	if n < 1 {
		return Subject{}, wire.Command{}, 0, errors.New("Remaining counts nothing for a subject Seed has just stored: Seed must store data under the subject's identifiers, and Remaining count it")
	}
	return s, cmd, n, nil
}

func (e *env) seed(ctx context.Context, s Subject) error {
	_, err := call(ctx, "Seed", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, e.cfg.Seed(ctx, s)
	})
	if err != nil {
		return fmt.Errorf("seed a subject: %w", err)
	}
	return nil
}

func (e *env) remaining(ctx context.Context, s Subject) (int64, error) {
	n, err := call(ctx, "Remaining", func(ctx context.Context) (int64, error) {
		return e.cfg.Remaining(ctx, s)
	})
	if err != nil {
		return 0, fmt.Errorf("count what remains of a subject: %w", err)
	}
	return n, nil
}

// errNoReturn says a callback was still running when its context ended.
var errNoReturn = errors.New("did not return")

// call runs fn and returns its result, or errNoReturn once ctx ends while
// fn is still running: the kit must not hang on a callback that ignores its
// context. A panic in fn is returned as an error.
func call[T any](ctx context.Context, name string, fn func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("%s panicked: %v", name, p)}
			}
		}()
		v, err := fn(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%s %w when its context ended (%w)", name, errNoReturn, ctx.Err())
	}
}

// request is the Request the SDK hands the handler for cmd.
func request(cmd wire.Command) connectors.Request {
	return connectors.Request{
		CommandID:   cmd.CommandID,
		RequestID:   cmd.RequestID,
		System:      cmd.System,
		Attempt:     cmd.Attempt,
		Identifiers: slices.Clone(cmd.Identifiers),
		DryRun:      cmd.DryRun,
		IssuedAt:    cmd.IssuedAt,
		ConfirmBy:   cmd.ConfirmBy,
	}
}

// erase calls the handler directly, as the checks that look past the SDK do.
func (e *env) erase(ctx context.Context, req connectors.Request) (connectors.Result, error) {
	return call(ctx, "Erase", func(ctx context.Context) (connectors.Result, error) {
		return e.cfg.Handler.Erase(ctx, req)
	})
}

// connector is one connectors.Run of the handler, on a command topic and
// consumer group of its own.
type connector struct {
	e      *env
	topic  string
	h      *counting
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
}

// startConnector creates a fresh command topic and runs the SDK on it. The
// topic is created here rather than by Run so that commands can be written
// before Run has started; a new consumer group starts at the topic's
// beginning, so none is missed.
func (e *env) startConnector(ctx context.Context) (*connector, error) {
	return e.startSignedConnector(ctx, "", "")
}

// startSignedConnector is startConnector with a signing credential: the
// key id and hex secret the connector checks commands and signs
// confirmations with; both empty for none.
func (e *env) startSignedConnector(ctx context.Context, keyID, secret string) (*connector, error) {
	n := e.seq.Add(1)
	topic := fmt.Sprintf("lethe.conformance.%s.%s.%d", e.cfg.System, e.runID, n)
	if err := connectors.EnsureTopics(ctx, e.brokers, connectors.DefaultPartitions, topic, wire.DLQTopic(topic)); err != nil {
		return nil, fmt.Errorf("set up a command topic: %w", err)
	}
	if e.cluster == nil {
		e.mu.Lock()
		e.topics = append(e.topics, topic, wire.DLQTopic(topic))
		e.mu.Unlock()
	}
	rctx, cancel := context.WithCancel(ctx)
	c := &connector{e: e, topic: topic, h: newCounting(e.cfg.Handler), cancel: cancel, done: make(chan struct{})}
	cfg := connectors.Config{
		Brokers: e.brokers,
		System:  e.cfg.System,
		Topic:   topic,
		GroupID: fmt.Sprintf("lethe-conformance-%s-%s-%d", e.cfg.System, e.runID, n),
		Logger:  e.log,
		KeyID:   keyID,
		Secret:  secret,
	}
	var h connectors.Handler = c.h
	if _, ok := e.cfg.Handler.(connectors.BatchHandler); ok {
		h = &countingBatch{c.h}
	}
	go func() {
		defer close(c.done)
		c.err = connectors.Run(rctx, cfg, h)
	}()
	return c, nil
}

// stop ends the connector and waits a little for it. A connector stuck in
// a handler that ignores its context cannot be stopped; it is left behind,
// and waited for only briefly so that the next check is not held up.
func (c *connector) stop() {
	c.cancel()
	grace := stopGrace
	if c.h.running() > 0 {
		grace = stuckGrace
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
}

// confirm sends cmd to the connector and returns the n-th confirmation
// answering it (n counts from 1).
func (c *connector) confirm(ctx context.Context, cmd wire.Command, n int) (wire.Confirmation, error) {
	if err := c.send(ctx, cmd, nil); err != nil {
		return wire.Confirmation{}, err
	}
	return c.await(ctx, cmd.CommandID, n)
}

// send writes cmd to the connector's topic, after sign (when not nil) has
// added headers to its message.
func (c *connector) send(ctx context.Context, cmd wire.Command, sign func(*kafka.Message)) error {
	c.e.feed.expect(cmd.CommandID)
	msg, err := connectors.EncodeCommand(c.topic, cmd)
	if err != nil {
		return fmt.Errorf("encode a command: %w", err)
	}
	if sign != nil {
		sign(&msg)
	}
	if err := connectors.WriteAll(ctx, c.e.w, c.e.log, msg); err != nil {
		return fmt.Errorf("send a command: %w", err)
	}
	return nil
}

func (c *connector) await(ctx context.Context, commandID string, n int) (wire.Confirmation, error) {
	confs, err := c.e.feed.wait(ctx, commandID, n, c.done)
	if err == nil {
		return confs[n-1], nil
	}
	if ctx.Err() == nil {
		// The wait ended on the connector's own stop, with ctx still live.
		if c.err != nil {
			return wire.Confirmation{}, fmt.Errorf("connectors.Run stopped before confirming a command: %w", c.err)
		}
		return wire.Confirmation{}, errors.New("connectors.Run returned before confirming a command")
	}
	// Say where the command got stuck, so the service knows where to look.
	switch {
	case c.h.calls(commandID) == 0:
		return wire.Confirmation{}, fmt.Errorf("no confirmation within %s, and Erase was never called for the command: the connector (connectors.Run with System %q) did not take it up in time", c.e.cfg.Timeout, c.e.cfg.System)
	case c.h.running() > 0:
		return wire.Confirmation{}, fmt.Errorf("no confirmation within %s: Erase was called and had not returned. Erase must finish promptly and return when its context is canceled (pass ctx to every blocking call, and stop waiting once ctx.Done() is closed)", c.e.cfg.Timeout)
	default:
		return wire.Confirmation{}, fmt.Errorf("Erase returned but no confirmation arrived within %s%s", c.e.cfg.Timeout, c.cause(commandID))
	}
}

// counting wraps the handler under test to see what the SDK asks of it. It
// also fails, in the handler's stead, the batch items a check names in
// fail: the partial failure the batch checks need, whatever the handler.
type counting struct {
	h        connectors.Handler
	mu       sync.Mutex
	byCmd    map[string]int
	lastErr  map[string]error
	inFlight int
	fail     map[string]bool // item ids
}

func newCounting(h connectors.Handler) *counting {
	return &counting{h: h, byCmd: make(map[string]int), lastErr: make(map[string]error), fail: make(map[string]bool)}
}

// detailInjected is the detail of an item the kit failed itself.
const detailInjected = "failed by the conformance kit"

// failItem makes the kit fail the batch item itemID without calling the
// handler for it; failItem(itemID, false) ends that.
func (c *counting) failItem(itemID string, fail bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[itemID] = fail
}

func (c *counting) failing(itemID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fail[itemID]
}

func (c *counting) Erase(ctx context.Context, req connectors.Request) (res connectors.Result, err error) {
	if c.failing(req.RequestID) {
		return connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailInjected}, nil
	}
	err = c.call(req.CommandID, "Erase", func() (err error) {
		res, err = c.h.Erase(ctx, req)
		return err
	})
	return res, err
}

// call runs one call of the wrapped handler for commandID, counted and in
// flight while it runs, and keeps its error; a panic is kept as an error
// and goes on, the SDK's to recover, as in production.
func (c *counting) call(commandID, what string, run func() error) (err error) {
	c.mu.Lock()
	c.byCmd[commandID]++
	c.inFlight++
	c.mu.Unlock()
	defer func() {
		p := recover()
		if p != nil {
			err = fmt.Errorf("%s panicked: %v", what, p)
		}
		c.mu.Lock()
		c.inFlight--
		c.lastErr[commandID] = err
		c.mu.Unlock()
		if p != nil {
			panic(p)
		}
	}()
	return run()
}

// countingBatch is counting for a handler that implements
// connectors.BatchHandler, so that the SDK gives it batch commands whole.
type countingBatch struct{ *counting }

func (c *countingBatch) EraseBatch(ctx context.Context, req connectors.BatchRequest) (_ []connectors.ItemResult, err error) {
	var out []connectors.ItemResult
	pass := req
	pass.Items = nil
	for _, it := range req.Items {
		if c.failing(it.ItemID) {
			out = append(out, connectors.ItemResult{ItemID: it.ItemID,
				Result: connectors.Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailInjected}})
			continue
		}
		pass.Items = append(pass.Items, it)
	}
	if len(pass.Items) == 0 {
		return out, nil
	}
	var res []connectors.ItemResult
	err = c.call(req.CommandID, "EraseBatch", func() (err error) {
		res, err = c.h.(connectors.BatchHandler).EraseBatch(ctx, pass)
		return err
	})
	return append(out, res...), err
}

// err returns the error Erase last returned for commandID: the SDK only
// logs it, and the kit discards the SDK's logs.
func (c *counting) err(commandID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr[commandID]
}

func (c *counting) calls(commandID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byCmd[commandID]
}

func (c *counting) running() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

// feed reads the confirmations topic from where it ended when the kit
// started, keeping the confirmations of the commands the kit sent. Reading
// each partition from an offset taken before any command was sent, rather
// than joining a consumer group at the topic's end, means no confirmation
// can slip by before the reader is assigned its partitions.
type feed struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	byCmd   map[string][]wire.Confirmation      // only the commands expected
	batches map[string][]wire.BatchConfirmation // likewise, of batch commands
	raw     map[string][]kafka.Message          // their messages, headers included
	arrived chan struct{}                       // closed and replaced at each arrival
}

func startFeed(ctx context.Context, brokers []string) (*feed, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{wire.ConfirmationsTopic}})
	if err != nil {
		return nil, fmt.Errorf("read the confirmations topic's metadata: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		return nil, fmt.Errorf("the confirmations topic %s has no partitions", wire.ConfirmationsTopic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{wire.ConfirmationsTopic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("read the confirmations topic's offsets: %w", err)
	}
	offsets := res.Topics[wire.ConfirmationsTopic]
	if len(offsets) != len(reqs) {
		return nil, fmt.Errorf("read the confirmations topic's offsets: %d partitions answered of %d", len(offsets), len(reqs))
	}
	rctx, cancel := context.WithCancel(context.Background())
	f := &feed{cancel: cancel, byCmd: make(map[string][]wire.Confirmation), raw: make(map[string][]kafka.Message),
		batches: make(map[string][]wire.BatchConfirmation), arrived: make(chan struct{})}
	for _, po := range offsets {
		if po.Error != nil {
			f.close()
			return nil, fmt.Errorf("read the confirmations topic's offsets: %w", po.Error)
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   brokers,
			Topic:     wire.ConfirmationsTopic,
			Partition: po.Partition,
			MinBytes:  1,
			MaxBytes:  10 << 20,
			MaxWait:   250 * time.Millisecond,
		})
		if err := r.SetOffset(po.LastOffset); err != nil {
			r.Close()
			f.close()
			return nil, fmt.Errorf("position a confirmations reader: %w", err)
		}
		f.wg.Add(1)
		go f.read(rctx, r)
	}
	return f, nil
}

func (f *feed) read(ctx context.Context, r *kafka.Reader) {
	defer f.wg.Done()
	defer r.Close()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// kafka-go retries the connection itself; pause so a
			// persistent error does not spin.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if bc, err := wire.DecodeBatchConfirmation(m.Value); err == nil {
			f.mu.Lock()
			if confs, ok := f.batches[bc.CommandID]; ok {
				f.batches[bc.CommandID] = append(confs, bc)
				close(f.arrived)
				f.arrived = make(chan struct{})
			}
			f.mu.Unlock()
			continue
		}
		conf, err := wire.DecodeConfirmation(m.Value)
		if err != nil {
			continue // not one of ours: the SDK sends only valid ones
		}
		f.mu.Lock()
		if confs, ok := f.byCmd[conf.CommandID]; ok {
			f.byCmd[conf.CommandID] = append(confs, conf)
			f.raw[conf.CommandID] = append(f.raw[conf.CommandID], m)
			close(f.arrived)
			f.arrived = make(chan struct{})
		}
		f.mu.Unlock()
	}
}

func (f *feed) close() {
	f.cancel()
	f.wg.Wait()
}

// expect makes the feed keep the confirmations of commandID; it must be
// called before the command is sent.
func (f *feed) expect(commandID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byCmd[commandID]; !ok {
		f.byCmd[commandID] = nil
	}
}

// expectBatch is expect for a batch command.
func (f *feed) expectBatch(commandID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.batches[commandID]; !ok {
		f.batches[commandID] = nil
	}
}

// waitBatch returns the batch confirmations of commandID once there are at
// least n, or an error when ctx ends or stop is closed first. The kit's
// batches are small enough for one confirmation each.
func (f *feed) waitBatch(ctx context.Context, commandID string, n int, stop <-chan struct{}) ([]wire.BatchConfirmation, error) {
	for {
		f.mu.Lock()
		confs, arrived := f.batches[commandID], f.arrived
		f.mu.Unlock()
		if len(confs) >= n {
			return slices.Clone(confs), nil
		}
		select {
		case <-arrived:
		case <-stop:
			return nil, errors.New("connector stopped")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// messages returns the messages of commandID's confirmations so far.
func (f *feed) messages(commandID string) []kafka.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.raw[commandID])
}

// wait returns the confirmations of commandID once there are at least n,
// or an error when ctx ends or stop is closed first.
func (f *feed) wait(ctx context.Context, commandID string, n int, stop <-chan struct{}) ([]wire.Confirmation, error) {
	for {
		f.mu.Lock()
		confs, arrived := f.byCmd[commandID], f.arrived
		f.mu.Unlock()
		if len(confs) >= n {
			return slices.Clone(confs), nil
		}
		select {
		case <-arrived:
		case <-stop:
			return nil, errors.New("connector stopped")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
