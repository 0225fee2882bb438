-- Bulk erasure, continued: the batch certificates, and the indexes the
-- batch side of the suppression list and of retries reads through.

-- batch_certificates keeps each finished batch's signed certificate exactly
-- as first issued (body is the served file, byte for byte), so that asking
-- again answers the same certificate (Store.PutBatchCertificate keeps the
-- first of two issued at once).
CREATE TABLE batch_certificates (
    batch_id  uuid        PRIMARY KEY REFERENCES erasure_batches (id) ON DELETE CASCADE,
    body      bytea       NOT NULL,
    issued_at timestamptz NOT NULL
);

-- A certificate that can be rewritten proves nothing: a stored one is never
-- updated. (Deleting the batch deletes it with the rest of the batch.)
CREATE FUNCTION batch_certificates_no_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'batch_certificates keeps the certificate first issued: UPDATE is not allowed';
END;
$$;

CREATE TRIGGER batch_certificates_no_update
    BEFORE UPDATE ON batch_certificates
    FOR EACH ROW EXECUTE FUNCTION batch_certificates_no_update();

-- The suppression list walks finished batches in (finished_xid, id) order
-- as it walks requests (0005), and each batch's digests in (id_type,
-- digest) order, so that a page is read from indexes rather than sorted.
CREATE INDEX erasure_batches_finished ON erasure_batches (finished_xid, id)
    WHERE finished_xid IS NOT NULL;
CREATE INDEX erasure_batches_finished_since ON erasure_batches (completed_at) INCLUDE (finished_xid)
    WHERE finished_xid IS NOT NULL AND NOT dry_run;
CREATE INDEX batch_subject_digests_list ON batch_subject_digests (batch_id, id_type, digest);

-- A retry finds a batch's failed outcomes without reading the others.
CREATE INDEX batch_outcomes_failed ON batch_outcomes (batch_id, system) WHERE status = 'failed';
