package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lib/pq"

	"github.com/lethe-dev/lethe/connectors"
	"github.com/lethe-dev/lethe/wire"
)

// batchItem is the state of one item of a batch command as EraseBatch
// works through it.
type batchItem struct {
	ids     []wire.Identifier
	cmdID   string
	derived []wire.Identifier
	skipped int
	records int64
	// erase is set for the items whose statements run in this call: not
	// answered from the commands table, not failed.
	erase bool
}

// EraseBatch carries out a batch command in one transaction: the reveal
// queries of every item first, then, per identifier type, each erase_batch
// statement once for all the items' values (or, for a type without them,
// the erase statements for each value). The rows a statement returns are
// counted for the items whose values they carry. Each item is recorded in
// the commands table under connectors.ItemCommandID, all in one statement;
// an item carried out before is answered from its record, as Erase answers
// a repeated command. An item whose reveal queries find more derived
// identifiers than a confirmation carries fails alone and is not erased.
//
// With req.DryRun everything runs and is rolled back. A database error
// fails the whole call, which the SDK retries as it does Erase's.
func (c *Connector) EraseBatch(ctx context.Context, req connectors.BatchRequest) ([]connectors.ItemResult, error) {
	out := make([]connectors.ItemResult, len(req.Items))
	items := make([]batchItem, len(req.Items))
	remember := !req.DryRun && req.CommandID != ""
	var claimIDs, claimReqs []string
	for i, it := range req.Items {
		out[i].ItemID = it.ItemID
		items[i].ids = c.configured(it.Identifiers)
		items[i].cmdID = connectors.ItemCommandID(req.CommandID, it.ItemID)
		if len(items[i].ids) == 0 {
			out[i].Result = connectors.Result{Outcome: wire.OutcomeNotFound, Detail: "the command carries no identifier of a configured type"}
			continue
		}
		items[i].erase = true
		claimIDs, claimReqs = append(claimIDs, items[i].cmdID), append(claimReqs, it.ItemID)
	}
	if len(claimIDs) == 0 {
		return out, nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, dbError("begin", err)
	}
	defer tx.Rollback()

	if remember {
		recs, err := c.ledger.claimMany(ctx, tx, claimIDs, claimReqs)
		if err != nil {
			return nil, dbError("commands table "+c.ledger.name, err)
		}
		for i := range items {
			rec, done := recs[items[i].cmdID]
			if !items[i].erase || !done {
				continue
			}
			items[i].erase = false
			r, err := c.repeat(ctx, tx, connectors.Request{RequestID: req.Items[i].ItemID}, items[i].ids, rec)
			if err != nil {
				return nil, err
			}
			out[i].Result = r
		}
	}
	var failed []string
	for i := range items {
		if !items[i].erase {
			continue
		}
		items[i].derived, items[i].skipped, err = c.reveal(ctx, tx, items[i].ids)
		if err != nil {
			return nil, err
		}
		if len(items[i].derived) > wire.MaxIdentifiers {
			items[i].erase = false
			failed = append(failed, items[i].cmdID)
			out[i].Result = connectors.Result{
				Outcome: wire.OutcomeFailed,
				Detail: fmt.Sprintf("the reveal queries found %d derived identifiers, more than the %d a confirmation carries; nothing was erased",
					len(items[i].derived), wire.MaxIdentifiers),
			}
		}
	}
	if err := c.eraseItems(ctx, tx, items); err != nil {
		return nil, err
	}
	var (
		doneIDs, outcomes, details []string
		records                    []int64
	)
	for i := range items {
		if !items[i].erase {
			continue
		}
		r := result(req.DryRun, items[i].records, items[i].derived, items[i].skipped)
		out[i].Result = r
		doneIDs, outcomes, records, details = append(doneIDs, items[i].cmdID), append(outcomes, string(r.Outcome)),
			append(records, r.Records), append(details, r.Detail)
	}
	if req.DryRun {
		if err := tx.Rollback(); err != nil {
			return nil, dbError("roll back the dry run", err)
		}
		return out, nil
	}
	if remember {
		if len(failed) > 0 {
			if err := c.ledger.release(ctx, tx, failed); err != nil {
				return nil, dbError("commands table "+c.ledger.name, err)
			}
		}
		if err := c.ledger.finishMany(ctx, tx, doneIDs, outcomes, records, details); err != nil {
			return nil, dbError("commands table "+c.ledger.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, dbError("commit", err)
	}
	return out, nil
}

// eraseItems runs the erase statements for the items to erase, type by
// type, and adds to each item the rows matched by its values.
func (c *Connector) eraseItems(ctx context.Context, tx *sql.Tx, items []batchItem) error {
	byValue := make(map[wire.Identifier][]int)
	var order []wire.Identifier
	for i := range items {
		if !items[i].erase {
			continue
		}
		for _, id := range items[i].ids {
			if _, seen := byValue[id]; !seen {
				order = append(order, id)
			}
			byValue[id] = append(byValue[id], i)
		}
	}
	values := make(map[string][]string)
	var types []string
	for _, id := range order {
		if _, seen := values[id.Type]; !seen {
			types = append(types, id.Type)
		}
		values[id.Type] = append(values[id.Type], id.Value)
	}
	for _, t := range types {
		s := c.stmts[t]
		if len(s.EraseBatch) == 0 {
			for _, v := range values[t] {
				id := wire.Identifier{Type: t, Value: v}
				n, err := c.erase(ctx, tx, []wire.Identifier{id})
				if err != nil {
					return err
				}
				for _, i := range byValue[id] {
					items[i].records += n
				}
			}
			continue
		}
		for k, stmt := range s.EraseBatch {
			matched, err := queryValues(ctx, tx, stmt, pq.Array(values[t]))
			if err != nil {
				return dbError(eraseBatchName(t, k), err)
			}
			for _, v := range matched {
				for _, i := range byValue[wire.Identifier{Type: t, Value: v}] {
					items[i].records++
				}
			}
		}
	}
	return nil
}
