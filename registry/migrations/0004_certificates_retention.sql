-- Certificates of erasure and the retention of Lethe's own records.

-- erasure_certificates keeps each finished request's signed certificate
-- exactly as first issued (document is the served file, byte for byte), so
-- that asking again answers the same certificate and retention, which
-- removes the rows it was made from, leaves it whole.
CREATE TABLE erasure_certificates (
    request_id uuid        PRIMARY KEY REFERENCES erasure_requests (id),
    key_id     text        NOT NULL,
    issued_at  timestamptz NOT NULL,
    document   bytea       NOT NULL
);

-- A certificate that can be replaced proves nothing either.
CREATE FUNCTION erasure_certificates_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'erasure_certificates is append-only: % is not allowed', TG_OP;
END;
$$;

CREATE TRIGGER erasure_certificates_no_update_delete
    BEFORE UPDATE OR DELETE ON erasure_certificates
    FOR EACH ROW EXECUTE FUNCTION erasure_certificates_append_only();

CREATE TRIGGER erasure_certificates_no_truncate
    BEFORE TRUNCATE ON erasure_certificates
    FOR EACH STATEMENT EXECUTE FUNCTION erasure_certificates_append_only();

-- pruned_at is when retention (LETHE_RETENTION) deleted a finished request's
-- per-system rows and ledger batches. The request row, its subject digests,
-- its certificate and its audit stay.
ALTER TABLE erasure_requests ADD COLUMN pruned_at timestamptz;

-- The pruner asks for finished, unpruned requests completed before a cutoff.
CREATE INDEX erasure_requests_prunable ON erasure_requests (completed_at)
    WHERE pruned_at IS NULL AND completed_at IS NOT NULL;
