package connectortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// The batch checks send batch commands, as Lethe does to a system that
// declares "batch": true. A handler that implements connectors.BatchHandler
// gets them whole; any other gets each item through Erase, as the SDK
// adapts it.

// batchSize is how many subjects the batch checks put in a command.
const batchSize = 3

// seededBatch returns batchSize fresh subjects with data in the service (or,
// at the positions in unknown, subjects never seeded), a batch command for
// them, and what Remaining counts for each.
func (k *checker) seededBatch(ctx context.Context, dryRun bool, unknown ...int) ([]Subject, wire.BatchCommand, []int64, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	bc := wire.BatchCommand{
		Schema:    wire.SchemaBatchCommand,
		CommandID: uuid.NewString(),
		BatchID:   uuid.NewString(),
		System:    k.t.system(),
		Attempt:   1,
		IssuedAt:  now,
		ConfirmBy: now.Add(72 * time.Hour),
		DryRun:    dryRun,
	}
	subjects := make([]Subject, batchSize)
	held := make([]int64, batchSize)
	for i := range subjects {
		if slices.Contains(unknown, i) {
			s, _, err := k.subject(dryRun)
			if err != nil {
				return nil, wire.BatchCommand{}, nil, err
			}
			subjects[i] = s
		} else {
			s, _, n, err := k.seeded(ctx, dryRun)
			if err != nil {
				return nil, wire.BatchCommand{}, nil, err
			}
			subjects[i], held[i] = s, n
		}
		bc.Items = append(bc.Items, wire.BatchItem{ItemID: uuid.NewString(), Identifiers: slices.Clone(subjects[i].Identifiers)})
	}
	if err := bc.Validate(); err != nil {
		return nil, wire.BatchCommand{}, nil, fmt.Errorf("a batch of the subjects NewSubject returned is not a valid batch command (%w)", err)
	}
	return subjects, bc, held, nil
}

// confirmBatch sends bc to the connector and returns the n-th batch
// confirmation answering it (n counts from 1), checking that it answers
// every item in order.
func (c *connector) confirmBatch(ctx context.Context, bc wire.BatchCommand, n int) (wire.BatchConfirmation, error) {
	c.e.l.feed.expectBatch(bc.CommandID)
	msg, err := connectors.EncodeBatchCommand(c.topic, bc)
	if err != nil {
		return wire.BatchConfirmation{}, fmt.Errorf("encode a batch command: %w", err)
	}
	if err := connectors.WriteAll(ctx, c.e.l.w, c.e.l.log, msg); err != nil {
		return wire.BatchConfirmation{}, fmt.Errorf("send a batch command: %w", err)
	}
	confs, err := c.e.l.feed.waitBatch(ctx, bc.CommandID, n, c.done)
	if err != nil {
		if ctx.Err() != nil {
			return wire.BatchConfirmation{}, fmt.Errorf("no batch confirmation within %s: the handler did not finish the batch command's items in time (the SDK gives them to EraseBatch at once, or to Erase one by one)", c.e.cfg.Timeout)
		}
		return wire.BatchConfirmation{}, errors.New("connectors.Run returned before confirming a batch command")
	}
	conf := confs[n-1]
	if len(conf.Items) != len(bc.Items) {
		return wire.BatchConfirmation{}, fmt.Errorf("the batch confirmation answers %d items of %d", len(conf.Items), len(bc.Items))
	}
	for i, it := range conf.Items {
		if it.ItemID != bc.Items[i].ItemID {
			return wire.BatchConfirmation{}, fmt.Errorf("the batch confirmation's item %d is not the command's item %d", i, i)
		}
	}
	return conf, nil
}

// wantItemErased reports an item outcome that does not say a seeded
// subject was erased.
func wantItemErased(it wire.ItemOutcome, i int, what string) error {
	if it.Outcome == wire.OutcomeErased && it.Records > 0 {
		return nil
	}
	return fmt.Errorf("item %d of %s was confirmed %s with %d records (detail %q): for each item of a batch the handler must remove what the service holds under the item's identifiers and report outcome erased with the records removed",
		i, what, it.Outcome, it.Records, it.Detail)
}

func checkBatchPartialFailure(ctx context.Context, k *checker) error {
	e := k.t.(*env)
	c, err := e.startConnector(ctx, "", nil)
	if err != nil {
		return err
	}
	defer c.close()
	subjects, bc, held, err := k.seededBatch(ctx, false)
	if err != nil {
		return err
	}
	c.h.failItem(bc.Items[1].ItemID, true)
	conf, err := c.confirmBatch(ctx, bc, 1)
	if err != nil {
		return err
	}
	for _, i := range []int{0, 2} {
		if err := wantItemErased(conf.Items[i], i, "a batch whose item 1 failed"); err != nil {
			return fmt.Errorf("%w. One item's failure must not fail the others: report each item's outcome in its own ItemResult", err)
		}
		if err := k.wantNothingLeft(ctx, c, subjects[i]); err != nil {
			return err
		}
	}
	if it := conf.Items[1]; it.Outcome != wire.OutcomeFailed || !it.Retryable {
		return fmt.Errorf("the item the kit failed was confirmed %s (retryable %v); the handler's results must not stand in for an item it was not given", it.Outcome, it.Retryable)
	}
	left, err := e.remaining(ctx, subjects[1])
	if err != nil {
		return err
	}
	if left != held[1] {
		return fmt.Errorf("the failed item's subject lost data (Remaining went from %d to %d) although the handler was never given it: erase only the items of the request", held[1], left)
	}

	// A new attempt of the same command carries the failed item out.
	c.h.failItem(bc.Items[1].ItemID, false)
	again := bc
	again.Attempt = 2
	conf2, err := c.confirmBatch(ctx, again, 2)
	if err != nil {
		return err
	}
	if err := wantItemErased(conf2.Items[1], 1, "the batch command's new attempt"); err != nil {
		return err
	}
	return k.wantNothingLeft(ctx, c, subjects[1])
}

func checkBatchRepeated(ctx context.Context, k *checker) error {
	e := k.t.(*env)
	c, err := e.startConnector(ctx, "", nil)
	if err != nil {
		return err
	}
	defer c.close()
	subjects, bc, _, err := k.seededBatch(ctx, false)
	if err != nil {
		return err
	}
	first, err := c.confirmBatch(ctx, bc, 1)
	if err != nil {
		return err
	}
	again := bc
	again.Attempt = 2
	second, err := c.confirmBatch(ctx, again, 2)
	if err != nil {
		return err
	}
	for i := range first.Items {
		if err := wantItemErased(first.Items[i], i, "a batch of seeded subjects"); err != nil {
			return err
		}
		a, b := first.Items[i], second.Items[i]
		if a.Outcome != b.Outcome || a.Records != b.Records {
			return fmt.Errorf("item %d of the batch command delivered again (same command_id, attempt 2) was confirmed %s with %d records after %s with %d. %s",
				i, b.Outcome, b.Records, a.Outcome, a.Records, fixRepeat)
		}
	}
	for _, s := range subjects {
		if err := k.wantNothingLeft(ctx, c, s); err != nil {
			return err
		}
	}
	bh, ok := e.cfg.Handler.(connectors.BatchHandler)
	if !ok {
		return nil // Erase's own repeats are repeated_command_id's to check
	}
	// Past the SDK, as EraseBatch meets a repeat the store did not answer.
	subjects, bc, _, err = k.seededBatch(ctx, false)
	if err != nil {
		return err
	}
	req := batchRequest(bc)
	r1, err := call(ctx, "EraseBatch", func(ctx context.Context) ([]connectors.ItemResult, error) { return bh.EraseBatch(ctx, req) })
	if err != nil {
		return fmt.Errorf("called directly, EraseBatch of seeded subjects failed: %w", err)
	}
	req.Attempt = 2
	r2, err := call(ctx, "EraseBatch", func(ctx context.Context) ([]connectors.ItemResult, error) { return bh.EraseBatch(ctx, req) })
	if err != nil {
		return fmt.Errorf("called again with the same command_id (attempt 2), EraseBatch failed: %w. %s", err, fixRepeat)
	}
	one, two := byItem(r1), byItem(r2)
	for i, it := range req.Items {
		a, b := one[it.ItemID], two[it.ItemID]
		if a.Outcome != wire.OutcomeErased || a.Records < 1 {
			return fmt.Errorf("called directly, EraseBatch answered item %d, a seeded subject, %s with %d records (detail %q): it must erase it and report erased with the records removed", i, a.Outcome, a.Records, a.Detail)
		}
		if b.Outcome != a.Outcome || b.Records != a.Records {
			return fmt.Errorf("called again with the same command_id (attempt 2), EraseBatch answered item %d %s with %d records after %s with %d: it ran the item again instead of recognising it. %s",
				i, b.Outcome, b.Records, a.Outcome, a.Records, fixRepeat)
		}
	}
	for _, s := range subjects {
		if err := k.wantNothingLeft(ctx, c, s); err != nil {
			return err
		}
	}
	return nil
}

func checkBatchDryRun(ctx context.Context, k *checker) error {
	e := k.t.(*env)
	c, err := e.startConnector(ctx, "", nil)
	if err != nil {
		return err
	}
	defer c.close()
	subjects, dry, held, err := k.seededBatch(ctx, true, 2)
	if err != nil {
		return err
	}
	planned, err := c.confirmBatch(ctx, dry, 1)
	if err != nil {
		return err
	}
	for i, s := range subjects {
		left, err := e.remaining(ctx, s)
		if err != nil {
			return err
		}
		if left != held[i] {
			return fmt.Errorf("a dry-run batch changed item %d's data (Remaining went from %d to %d): with dry_run, change nothing and only report what would be erased", i, held[i], left)
		}
	}
	for _, i := range []int{0, 1} {
		if err := wantItemErased(planned.Items[i], i, "a dry-run batch"); err != nil {
			return err
		}
	}
	if it := planned.Items[2]; it.Outcome != wire.OutcomeNotFound || it.Records != 0 {
		return fmt.Errorf("item 2 of a dry-run batch, a subject never held, was confirmed %s with %d records: it must be not_found with 0", it.Outcome, it.Records)
	}
	real := dry
	real.CommandID, real.DryRun = uuid.NewString(), false
	done, err := c.confirmBatch(ctx, real, 1)
	if err != nil {
		return err
	}
	for i := range done.Items {
		if done.Items[i].Records != planned.Items[i].Records {
			return fmt.Errorf("the dry run reported %d records for item %d but the erasure that followed removed %d: a dry run must report exactly what the erasure would remove",
				planned.Items[i].Records, i, done.Items[i].Records)
		}
	}
	for _, s := range subjects {
		if err := k.wantNothingLeft(ctx, c, s); err != nil {
			return err
		}
	}
	return nil
}

// batchRequest is the BatchRequest the SDK hands a BatchHandler for bc.
func batchRequest(bc wire.BatchCommand) connectors.BatchRequest {
	return connectors.BatchRequest{
		CommandID: bc.CommandID,
		BatchID:   bc.BatchID,
		System:    bc.System,
		Attempt:   bc.Attempt,
		Items:     slices.Clone(bc.Items),
		DryRun:    bc.DryRun,
		IssuedAt:  bc.IssuedAt,
		ConfirmBy: bc.ConfirmBy,
	}
}

func byItem(rs []connectors.ItemResult) map[string]connectors.Result {
	out := make(map[string]connectors.Result, len(rs))
	for _, r := range rs {
		out[r.ItemID] = r.Result
	}
	return out
}
