package connectortest

import (
	"context"
	"encoding/hex"
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
	"github.com/lethe-dev/lethe/internal/kafkasec"
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

// env is one run of the kit: the broker and the link to it that every
// check shares. It is the kit's target: a handler run in process through
// the SDK, one connector per check.
type env struct {
	cfg     Config
	brokers []string
	cluster *kfake.Cluster // the kit's own broker; nil on a real cluster
	l       *link
	runID   string // names this run's topics and groups
	seq     atomic.Int64

	mu     sync.Mutex
	topics []string // created on a real cluster, deleted by close
}

var (
	_ target       = (*env)(nil)
	_ directEraser = (*env)(nil)
	_ session      = (*connector)(nil)
)

func start(ctx context.Context, cfg Config) (_ *env, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	e := &env{
		cfg:     cfg,
		brokers: cfg.Brokers,
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
	if e.l, err = dial(ctx, e.brokers, kafkasec.Security{}, slog.New(slog.DiscardHandler)); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.l != nil {
		e.l.close()
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

func (e *env) checker() *checker { return &checker{t: e, timeout: e.cfg.Timeout} }

func (e *env) checks() []check {
	cs := []check{
		{CheckEraseLeavesNothing, checkEraseLeavesNothing},
		{CheckRepeatedCommand, checkRepeatedCommand},
		{CheckUnknownSubject, checkUnknownSubject},
		{CheckDryRun, checkDryRun},
		{CheckUnknownType, checkUnknownType},
		{CheckMalformed, checkMalformed},
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

func (e *env) system() string { return e.cfg.System }

func (e *env) newSubject() Subject { return e.cfg.NewSubject() }

func (e *env) seed(ctx context.Context, s Subject) error {
	_, err := call(ctx, "Seed", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, e.cfg.Seed(ctx, s)
	})
	return err
}

func (e *env) count(ctx context.Context, s Subject) (int64, bool, error) {
	n, err := e.remaining(ctx, s)
	return n, true, err
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

// open starts a connector of its own for one check, with a fresh signing
// credential when signed.
func (e *env) open(ctx context.Context, signed bool) (session, error) {
	if !signed {
		return e.startConnector(ctx, "", nil)
	}
	keyID, secret, err := newCredential()
	if err != nil {
		return nil, err
	}
	return e.startConnector(ctx, keyID, secret)
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
// consumer group of its own: the kit's session.
type connector struct {
	*kafkaSession
	e      *env
	h      *counting
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
}

// startConnector creates a fresh command topic and runs the SDK on it with
// the signing credential keyID and secret (none when empty). The topic is
// created here rather than by Run so that commands can be written before
// Run has started; a new consumer group starts at the topic's beginning, so
// none is missed.
func (e *env) startConnector(ctx context.Context, keyID string, secret []byte) (*connector, error) {
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
	ks, err := e.l.session(ctx, topic, keyID, secret)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	c := &connector{kafkaSession: ks, e: e, h: newCounting(e.cfg.Handler), cancel: cancel, done: make(chan struct{})}
	cfg := connectors.Config{
		Brokers: e.brokers,
		System:  e.cfg.System,
		Topic:   topic,
		GroupID: fmt.Sprintf("lethe-conformance-%s-%s-%d", e.cfg.System, e.runID, n),
		Logger:  e.l.log,
	}
	if secret != nil {
		cfg.KeyID, cfg.Secret = keyID, hex.EncodeToString(secret)
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

// close ends the connector and waits a little for it. A connector stuck in
// a handler that ignores its context cannot be stopped; it is left behind,
// and waited for only briefly so that the next check is not held up.
func (c *connector) close() {
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
	c.kafkaSession.close()
}

func (c *connector) await(ctx context.Context, commandID string, n int) (wire.Confirmation, error) {
	conf, err := c.confirmation(ctx, commandID, n, c.done)
	if se := (*signatureError)(nil); err == nil || errors.As(err, &se) {
		return conf, err
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

func (c *connector) calls(commandID string) (int, bool) { return c.h.calls(commandID), true }

// cause quotes the error Erase returned for a command, which the SDK
// replaced by a fixed detail in the confirmation.
func (c *connector) cause(commandID string) string {
	if err := c.h.err(commandID); err != nil {
		return fmt.Sprintf("; Erase returned the error %q", err.Error())
	}
	return ""
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
