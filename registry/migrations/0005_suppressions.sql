-- The suppression list (Store.ListSuppressions): the keyed digests of the
-- subjects of finished erasure requests, which a service restoring a backup
-- erases again. Clients read it incrementally, resuming after the last entry
-- they saw, so the order must never let an entry appear behind a position a
-- client has already passed.
--
-- completed_at cannot give that order: it is the workflow's time, written by
-- an activity that may run seconds or hours later (a retried transaction, a
-- worker restart), so a request can be committed with a completed_at earlier
-- than entries already read. finished_xid is the id of the transaction that
-- recorded the final status instead. Every transaction with an id below the
-- oldest one still running (pg_snapshot_xmin) has ended, so entries below
-- that horizon are settled: nothing will ever be committed among them. The
-- list serves only settled entries, in finished_xid order; a long-running
-- transaction on the server delays new entries, never loses them.
ALTER TABLE erasure_requests ADD COLUMN finished_xid xid8;

-- Requests that finished before this migration are settled: they share its
-- transaction id, and the request id orders them.
UPDATE erasure_requests SET finished_xid = pg_current_xact_id() WHERE completed_at IS NOT NULL;

ALTER TABLE erasure_requests ADD CONSTRAINT erasure_requests_finished_xid
    CHECK ((finished_xid IS NULL) = (completed_at IS NULL));

-- The trigger stamps the transaction that gives a request its completion
-- time, however it is written (ApplyLedger today, any other writer later),
-- and never changes the stamp afterwards.
CREATE FUNCTION erasure_requests_stamp_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.finished_xid := pg_current_xact_id();
    RETURN NEW;
END;
$$;

CREATE TRIGGER erasure_requests_stamp_finished
    BEFORE INSERT OR UPDATE ON erasure_requests
    FOR EACH ROW
    WHEN (NEW.completed_at IS NOT NULL AND NEW.finished_xid IS NULL)
    EXECUTE FUNCTION erasure_requests_stamp_finished();

-- Paging walks the finished requests in (finished_xid, id) order, skipping
-- the dry runs, and joins each to its subject digests through
-- request_subjects' primary key. The index keeps the dry runs so that
-- Migrate's check for positions of another server (repairFinishedXIDs) reads
-- it too.
CREATE INDEX erasure_requests_finished ON erasure_requests (finished_xid, id)
    WHERE finished_xid IS NOT NULL;

-- The first page of a list filtered by since starts at the lowest
-- finished_xid among the requests finished since then, found here without
-- reading the requests themselves.
CREATE INDEX erasure_requests_finished_since ON erasure_requests (completed_at) INCLUDE (finished_xid)
    WHERE finished_xid IS NOT NULL AND NOT dry_run;
