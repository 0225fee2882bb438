-- Bulk retries (POST /v1/erasures/retry) are idempotent per key: the first
-- call with a key stores its answer here, and a repeat with the same body
-- gets that answer again instead of retrying anew. The key and the body are
-- kept as keyed digests, like an erasure request's.
CREATE TABLE bulk_retries (
    idempotency_key text        PRIMARY KEY,
    request_hash    text        NOT NULL,
    actor           text        NOT NULL DEFAULT '',
    result          json,
    created_at      timestamptz NOT NULL
);

-- The reconciler walks the open requests in id order; the bulk retry finds
-- failed systems by status.
CREATE INDEX erasure_requests_open ON erasure_requests (id) WHERE status IN ('pending', 'running');
CREATE INDEX erasure_systems_failed ON erasure_systems (request_id) WHERE status = 'failed';
