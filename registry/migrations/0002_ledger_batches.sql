-- ledger_batches remembers which of a request's ledger deltas were applied
-- (lethe.LedgerDelta.Batch), so that a delta written again changes nothing:
-- an activity retried after its transaction committed, or run again by a
-- worker that took over the task of one that died before Temporal recorded
-- the result, would otherwise append its audit events a second time.
CREATE TABLE ledger_batches (
    request_id uuid NOT NULL REFERENCES erasure_requests (id) ON DELETE CASCADE,
    batch      text NOT NULL,
    PRIMARY KEY (request_id, batch)
);
