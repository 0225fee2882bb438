-- The ledger batch an audit event was written in (ApplyLedger), so that a
-- workflow task run again with a signal its first attempt had not seen,
-- whose batch has the same number but other contents, adds only the events
-- the first attempt did not write. NULL for events written outside a
-- batch. The hash chain does not cover it: it says how the row came, not
-- what happened.
ALTER TABLE audit_events ADD COLUMN ledger_batch text;
CREATE INDEX audit_events_ledger_batch ON audit_events (request_id, ledger_batch) WHERE ledger_batch IS NOT NULL;
