-- A hash chain over the audit: every row of audit_events carries its place
-- in one global sequence (seq), the hash of the row before it (prev_hash)
-- and its own hash, SHA-256 over a canonical encoding of all its columns and
-- prev_hash. Editing, deleting or inserting a row anywhere breaks the chain
-- at that row, which `lethe audit verify` recomputes in Go without trusting
-- anything in this file.
--
-- The encoding (version lethe.audit.v1) is a sequence of netstrings, each
-- "<byte length in decimal>:<UTF-8 bytes>,", of these fields in this order:
--   lethe.audit.v1, seq, id, request_id ('' when NULL, else the lower-case
--   hyphenated UUID), hold_id, system, kind, attempt, detail,
--   at (microseconds since 1970-01-01T00:00:00Z, decimal), prev_hash
-- Integers are decimal without leading zeros ('-' for negatives); hashes are
-- lower-case hex. The first row's prev_hash is 64 zeros.

-- Events about legal holds belong to no request.
ALTER TABLE audit_events ALTER COLUMN request_id DROP NOT NULL;
ALTER TABLE audit_events ADD COLUMN hold_id text NOT NULL DEFAULT '';
ALTER TABLE audit_events ADD COLUMN seq bigint;
ALTER TABLE audit_events ADD COLUMN prev_hash text;
ALTER TABLE audit_events ADD COLUMN hash text;

-- audit_chain_head is the chain's last link. Appending locks its one row
-- (FOR UPDATE) until the inserting transaction ends, so concurrent writers
-- take turns and the chain never forks. Whoever writes audit events should
-- do so last in its transaction, to hold the lock only until the commit.
CREATE TABLE audit_chain_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint  NOT NULL CHECK (seq >= 0),
    hash text    NOT NULL
);

CREATE FUNCTION audit_netstring(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT octet_length(convert_to(v, 'UTF8'))::text || ':' || v || ','
$$;

-- audit_event_hash is the encoding above; the migration's backfill and the
-- insert trigger use it, the verifier does not.
CREATE FUNCTION audit_event_hash(seq bigint, id bigint, request_id uuid, hold_id text,
    system text, kind text, attempt integer, detail text, at timestamptz, prev_hash text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(
        audit_netstring('lethe.audit.v1') ||
        audit_netstring(seq::text) ||
        audit_netstring(id::text) ||
        audit_netstring(coalesce(request_id::text, '')) ||
        audit_netstring(hold_id) ||
        audit_netstring(system) ||
        audit_netstring(kind) ||
        audit_netstring(attempt::text) ||
        audit_netstring(detail) ||
        audit_netstring((extract(epoch FROM at) * 1000000)::bigint::text) ||
        audit_netstring(prev_hash),
    'UTF8')), 'hex')
$$;

-- The rows a database migrated from 0002 already holds are chained in the
-- order of their ids. The append-only trigger is off for the backfill only,
-- inside this migration's transaction.
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete;

DO $$
DECLARE
    r    record;
    n    bigint := 0;
    prev text   := repeat('0', 64);
    h    text;
BEGIN
    FOR r IN SELECT * FROM audit_events ORDER BY id LOOP
        n := n + 1;
        h := audit_event_hash(n, r.id, r.request_id, r.hold_id, r.system, r.kind,
            r.attempt, r.detail, r.at, prev);
        UPDATE audit_events SET seq = n, prev_hash = prev, hash = h WHERE id = r.id;
        prev := h;
    END LOOP;
    INSERT INTO audit_chain_head (one, seq, hash) VALUES (true, n, prev);
END;
$$;

ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete;

ALTER TABLE audit_events ALTER COLUMN seq SET NOT NULL;
ALTER TABLE audit_events ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE audit_events ALTER COLUMN hash SET NOT NULL;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_seq_unique UNIQUE (seq);

-- A request's history and its last link are read by request, in chain order.
DROP INDEX audit_events_request;
CREATE INDEX audit_events_request ON audit_events (request_id, seq);

-- Every insert is chained here, whatever statement made it: seq, prev_hash
-- and hash given by the inserter are overwritten.
CREATE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_chain_head h WHERE h.one FOR UPDATE;
    NEW.seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.hash := audit_event_hash(NEW.seq, NEW.id, NEW.request_id, NEW.hold_id, NEW.system,
        NEW.kind, NEW.attempt, NEW.detail, NEW.at, NEW.prev_hash);
    UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE one;
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_events_chain
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();
