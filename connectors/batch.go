package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/lethe-dev/lethe/wire"
)

// BatchHandler is what a service implements, besides Handler, to erase
// many subjects in one call when its system declares "batch": true: one
// statement per table for a thousand subjects costs far less than a
// thousand. Run gives a batch command to EraseBatch when the handler has
// it, and otherwise passes each item through Erase. Like Erase it must be
// idempotent and honour req.DryRun.
//
// EraseBatch returns one ItemResult per item of req, matched by ItemID; an
// item it leaves out is confirmed failed. An error fails every item of the
// call the way Erase's error fails its command: retried (Config.Retry),
// then a retryable failure, or at once a definitive one when wrapped by
// Permanent. A handler that can tell which items failed says so in their
// results instead, so that the others count.
type BatchHandler interface {
	Handler
	EraseBatch(ctx context.Context, req BatchRequest) ([]ItemResult, error)
}

// BatchRequest is one batch command as the handler sees it: the items not
// already answered by an earlier delivery of the same command.
type BatchRequest struct {
	CommandID string
	BatchID   string
	System    string
	Attempt   int
	// Items hold only the identifier types this system declared. The
	// values are personal data: never log them.
	Items     []wire.BatchItem
	DryRun    bool
	IssuedAt  time.Time
	ConfirmBy time.Time
}

// ItemResult is what a BatchHandler reports for one item.
type ItemResult struct {
	ItemID string
	Result
}

// detailNoItemResult answers an item a BatchHandler left out of its results.
const detailNoItemResult = "the batch handler returned no result for this item"

// ItemCommandID is the command id under which the SDK handles one item of a
// batch command: the command id a Handler sees in Request.CommandID for an
// item passed to it, and the key of the item's confirmation in the dedup
// store. It is derived from the batch command's id and the item's id, so
// that every delivery and attempt of the command gives the item the same
// one.
func ItemCommandID(commandID, itemID string) string {
	ns, err := uuid.Parse(commandID)
	if err != nil {
		ns = uuid.Nil
	}
	return uuid.NewSHA1(ns, []byte(itemID)).String()
}

// itemCommand is item of bc as a single command: the form in which an item
// goes through the dedup store, a Handler and NewConfirmation. Its request
// id is the item's id.
func itemCommand(bc *wire.BatchCommand, item wire.BatchItem) wire.Command {
	return wire.Command{
		Schema:      wire.SchemaCommand,
		CommandID:   ItemCommandID(bc.CommandID, item.ItemID),
		RequestID:   item.ItemID,
		System:      bc.System,
		Attempt:     bc.Attempt,
		Identifiers: item.Identifiers,
		IssuedAt:    bc.IssuedAt,
		ConfirmBy:   bc.ConfirmBy,
		DryRun:      bc.DryRun,
	}
}

// itemOutcome is conf, an item's confirmation, as an item of a batch
// confirmation.
func itemOutcome(conf wire.Confirmation) wire.ItemOutcome {
	return wire.ItemOutcome{
		ItemID:             conf.RequestID,
		Outcome:            conf.Outcome,
		Records:            conf.Records,
		Detail:             conf.Detail,
		Retryable:          conf.Retryable,
		DerivedIdentifiers: conf.DerivedIdentifiers,
	}
}

// messageSchema is the schema a message says it carries: its HeaderSchema
// header, or without one the body's schema field.
func messageSchema(m kafka.Message) string {
	if s, ok := Header(m, wire.HeaderSchema); ok {
		return s
	}
	var probe struct {
		Schema string `json:"schema"`
	}
	if json.Unmarshal(m.Value, &probe) != nil {
		return ""
	}
	return probe.Schema
}

// handleBatch answers one batch command: each item from the dedup store
// when an earlier delivery answered it with other than a failure, the rest
// through the handler. ok is false when the command was abandoned at
// shutdown; the items finished by then are recorded, so its redelivery
// answers them from the store.
func (c *consumer) handleBatch(ctx, hctx, dctx context.Context, m kafka.Message, bc *wire.BatchCommand, twins *twinMap) (result, bool) {
	var (
		items []wire.ItemOutcome
		ok    bool
	)
	if bh, is := c.h.(BatchHandler); is {
		items, ok = c.answerBatch(ctx, hctx, dctx, bh, bc, twins)
	} else {
		items, ok = c.answerItems(ctx, hctx, dctx, bc, twins)
	}
	if !ok {
		return result{}, false
	}
	tmpl := wire.BatchConfirmation{
		Schema:      wire.SchemaBatchConfirmation,
		CommandID:   bc.CommandID,
		BatchID:     bc.BatchID,
		System:      bc.System,
		ConfirmedAt: c.cfg.Now().UTC(),
	}
	msgs, err := c.encodeBatchConfirmations(tmpl, items)
	if err != nil {
		return result{msg: c.deadLetter(m, DLQUnencodable, "cannot encode the confirmation of this batch command"), done: true}, true
	}
	return result{msg: msgs[0], more: msgs[1:], done: true}, true
}

// encodeBatchConfirmations packs items into as few batch confirmations as
// the limits allow and encodes each, signed when the connector has a
// credential.
func (c *consumer) encodeBatchConfirmations(tmpl wire.BatchConfirmation, items []wire.ItemOutcome) ([]kafka.Message, error) {
	parts, err := wire.PackBatchConfirmations(tmpl, items)
	if err != nil {
		return nil, err
	}
	msgs := make([]kafka.Message, len(parts))
	for i, p := range parts {
		msg, err := EncodeBatchConfirmation(p)
		if err != nil {
			return nil, err
		}
		if c.sg != nil {
			msg = c.sg.sign(msg)
		}
		msgs[i] = msg
	}
	return msgs, nil
}

// answerItems passes each item of bc through the Handler, as answer does a
// command, up to Config.Concurrency at once.
func (c *consumer) answerItems(ctx, hctx, dctx context.Context, bc *wire.BatchCommand, twins *twinMap) ([]wire.ItemOutcome, bool) {
	items := make([]wire.ItemOutcome, len(bc.Items))
	var (
		abandoned atomic.Bool
		wg        sync.WaitGroup
	)
	slots := make(chan struct{}, c.cfg.Concurrency)
	for i, it := range bc.Items {
		if ctx.Err() != nil {
			abandoned.Store(true)
			break
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			conf, _, ok := c.answer(ctx, hctx, dctx, itemCommand(bc, it), twins, false)
			if !ok {
				abandoned.Store(true)
				return
			}
			items[i] = itemOutcome(conf)
		}()
	}
	wg.Wait()
	return items, !abandoned.Load()
}

// answerBatch answers the items of bc it can from the dedup store and
// gives the rest to h in one call.
func (c *consumer) answerBatch(ctx, hctx, dctx context.Context, h BatchHandler, bc *wire.BatchCommand, twins *twinMap) ([]wire.ItemOutcome, bool) {
	items := make([]wire.ItemOutcome, len(bc.Items))
	cmds := make([]wire.Command, len(bc.Items))
	for i, it := range bc.Items {
		cmds[i] = itemCommand(bc, it)
	}
	found := c.recordedItems(hctx, cmds, twins)
	var todo []int
	for i := range cmds {
		if conf, ok := found[i]; ok {
			c.cfg.Observer.CommandDuplicate(c.cfg.System)
			items[i] = itemOutcome(conf)
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		c.log.Debug("batch command answered with its recorded confirmations", "batch_id", bc.BatchID, "attempt", bc.Attempt)
		return items, true
	}
	if ctx.Err() != nil {
		return nil, false
	}
	confs, ok := c.eraseBatch(ctx, hctx, h, bc, cmds, todo)
	if !ok {
		return nil, false
	}
	confs = c.recordItems(dctx, cmds, todo, confs)
	for k, i := range todo {
		if replayable(confs[k]) {
			twins.put(confs[k])
		}
		items[i] = itemOutcome(confs[k])
	}
	return items, true
}

// recordedItems returns, by position, the confirmations that may answer
// the item commands cmds: given earlier in this batch of messages, or
// recorded in the store.
func (c *consumer) recordedItems(ctx context.Context, cmds []wire.Command, twins *twinMap) map[int]wire.Confirmation {
	out := make(map[int]wire.Confirmation)
	var ask []int
	for i, cmd := range cmds {
		if conf, ok := twins.get(cmd.CommandID); ok {
			out[i] = conf
		} else {
			ask = append(ask, i)
		}
	}
	ms, ok := c.cfg.Dedup.(manyStore)
	if !ok {
		for _, i := range ask {
			if conf, found := c.recorded(ctx, cmds[i]); found {
				out[i] = conf
			}
		}
		return out
	}
	ids := make([]string, len(ask))
	for k, i := range ask {
		ids[k] = cmds[i].CommandID
	}
	got, err := ms.getMany(ctx, ids)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("look up confirmations", "items", len(ids), "error_type", errorType(err))
		}
		return out
	}
	for _, i := range ask {
		if conf, found := got[cmds[i].CommandID]; found && answers(conf, cmds[i]) && replayable(conf) {
			out[i] = conf
		}
	}
	return out
}

// recordItems records the replayable confirmations confs of the item
// commands at positions todo of cmds, as record does one, and returns the
// confirmations to publish.
func (c *consumer) recordItems(ctx context.Context, cmds []wire.Command, todo []int, confs []wire.Confirmation) []wire.Confirmation {
	ms, ok := c.cfg.Dedup.(manyStore)
	if !ok {
		for k, i := range todo {
			if replayable(confs[k]) {
				confs[k] = c.record(ctx, cmds[i], confs[k])
			}
		}
		return confs
	}
	var put []wire.Confirmation
	for _, conf := range confs {
		if replayable(conf) {
			put = append(put, conf)
		}
	}
	kept, err := ms.putFirstMany(ctx, put)
	if err != nil {
		c.log.Warn("record confirmations", "items", len(put), "error_type", errorType(err))
	}
	for k, i := range todo {
		if !replayable(confs[k]) {
			continue
		}
		if stored, found := kept[confs[k].CommandID]; found && answers(stored, cmds[i]) && replayable(stored) {
			confs[k] = stored
		}
		if c.cfg.afterRecord != nil {
			c.cfg.afterRecord(ctx, confs[k])
		}
	}
	return confs
}

// eraseBatch calls h for the items of bc at positions todo, retrying its
// errors as erase does, and returns their confirmations in todo's order.
func (c *consumer) eraseBatch(ctx, hctx context.Context, h BatchHandler, bc *wire.BatchCommand, cmds []wire.Command, todo []int) ([]wire.Confirmation, bool) {
	req := BatchRequest{
		CommandID: bc.CommandID,
		BatchID:   bc.BatchID,
		System:    bc.System,
		Attempt:   bc.Attempt,
		DryRun:    bc.DryRun,
		IssuedAt:  bc.IssuedAt,
		ConfirmBy: bc.ConfirmBy,
		Items:     make([]wire.BatchItem, len(todo)),
	}
	for k, i := range todo {
		req.Items[k] = bc.Items[i]
	}
	start := time.Now()
	res, calls, ok, err := retryCall(ctx, hctx, c.cfg.Retry, func(calls int, delay time.Duration, err error) {
		c.log.Warn("batch handler failed; retrying", "batch_id", bc.BatchID, "attempt", bc.Attempt,
			"call", calls, "delay", delay, "error_type", errorType(err))
		c.cfg.Observer.HandlerRetried(c.cfg.System)
	}, func(hctx context.Context) ([]ItemResult, error) { return callBatch(hctx, h, req) })
	if !ok {
		return nil, false
	}
	now := c.cfg.Now()
	confs := make([]wire.Confirmation, len(todo))
	switch {
	case err == nil:
		byID := make(map[string]Result, len(res))
		for _, r := range res {
			if _, dup := byID[r.ItemID]; !dup {
				byID[r.ItemID] = r.Result
			}
		}
		invalid := 0
		for k, i := range todo {
			r, found := byID[cmds[i].RequestID]
			if !found {
				r = Result{Outcome: wire.OutcomeFailed, Detail: detailNoItemResult}
				invalid++
			}
			confs[k] = NewConfirmation(cmds[i], r, now)
			if confs[k].Detail == detailInvalidOutcome || strings.HasPrefix(confs[k].Detail, detailInvalidResult) {
				invalid++
			}
		}
		if invalid > 0 {
			c.log.Error("batch handler returned invalid or missing item results", "batch_id", bc.BatchID, "items", invalid)
		}
	case isPermanent(err):
		c.log.Error("batch handler failed permanently", "batch_id", bc.BatchID, "attempt", bc.Attempt, "error_type", errorType(err))
		for k, i := range todo {
			confs[k] = NewConfirmation(cmds[i], Result{Outcome: wire.OutcomeFailed, Detail: detailHandlerFailedPermanently}, now)
		}
	default:
		c.log.Error("batch handler failed", "batch_id", bc.BatchID, "attempt", bc.Attempt, "calls", calls, "error_type", errorType(err))
		for k, i := range todo {
			confs[k] = NewConfirmation(cmds[i], Result{Outcome: wire.OutcomeFailed, Retryable: true, Detail: detailHandlerFailed}, now)
		}
	}
	d := time.Since(start)
	for _, conf := range confs {
		c.cfg.Observer.CommandHandled(c.cfg.System, conf.Outcome, calls, d)
	}
	c.log.Debug("batch command handled", "batch_id", bc.BatchID, "attempt", bc.Attempt,
		"items", len(todo), "calls", calls, "duration", d)
	return confs, true
}

// callBatch runs the batch handler, turning a panic into an error as call
// does.
func callBatch(ctx context.Context, h BatchHandler, req BatchRequest) (res []ItemResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{kind: fmt.Sprintf("%T", p)}
		}
	}()
	return h.EraseBatch(ctx, req)
}

// EncodeBatchConfirmation is the Kafka message that carries c: on the
// confirmations topic, keyed by the batch id, with the schema header.
func EncodeBatchConfirmation(c wire.BatchConfirmation) (kafka.Message, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode batch confirmation: %w", err)
	}
	return kafka.Message{
		Topic:   wire.ConfirmationsTopic,
		Key:     []byte(c.BatchID),
		Value:   b,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(c.Schema)}},
	}, nil
}

// EncodeBatchCommand is the Kafka message that carries c to a system's
// command topic, keyed by the batch id with the schema header. Lethe's
// dispatch and the tests that play Lethe's part build batch commands with
// it.
func EncodeBatchCommand(topic string, c wire.BatchCommand) (kafka.Message, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode batch command: %w", err)
	}
	return kafka.Message{
		Topic:   topic,
		Key:     []byte(c.BatchID),
		Value:   b,
		Headers: []kafka.Header{{Key: wire.HeaderSchema, Value: []byte(c.Schema)}},
	}, nil
}
