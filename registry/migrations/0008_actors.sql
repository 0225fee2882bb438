-- Actors: every act names who did it. The API records the authenticated
-- principal's subject (auth.Principal.Subject: "token:<name>", an OIDC sub,
-- or "dev") on the request it creates, the hold it places or lifts, and on
-- every audit event it causes. Lethe's own steps (the workflow, the relay,
-- retention) act for nobody and leave the actor empty, as do all rows
-- written before this migration.

ALTER TABLE erasure_requests ADD COLUMN created_by text NOT NULL DEFAULT '';

ALTER TABLE legal_holds
    ADD COLUMN placed_by text NOT NULL DEFAULT '',
    ADD COLUMN lifted_by text NOT NULL DEFAULT '';

-- Adding a column with a constant default rewrites no row, so neither the
-- append-only trigger nor the chain sees the rows already written.
ALTER TABLE audit_events ADD COLUMN actor text NOT NULL DEFAULT '';

-- The chain covers the actor. A row with an empty actor hashes exactly as
-- before (lethe.audit.v1, migration 0003), so every row already written
-- keeps verifying unchanged. A row with an actor hashes version
-- lethe.audit.v2: the netstrings of
--   lethe.audit.v2, seq, id, request_id, hold_id, system, kind, attempt,
--   detail, at, prev_hash, actor
-- that is, v1's fields in v1's order and encoding under the new version
-- name, followed by the actor's netstring. Which version a row hashes is
-- read from the row itself (actor empty or not), so editing the actor
-- breaks the row's hash whichever way it goes: another name changes the v2
-- encoding; blanking it makes the verifier recompute a v1 hash, which
-- differs from the stored v2 one if only by the version name; naming an
-- actor on a row that had none makes it recompute a v2 hash where a v1 one
-- was stored.
CREATE FUNCTION audit_event_hash(seq bigint, id bigint, request_id uuid, hold_id text,
    system text, kind text, attempt integer, detail text, at timestamptz, prev_hash text,
    actor text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN actor = '' THEN
        audit_event_hash(seq, id, request_id, hold_id, system, kind, attempt, detail, at, prev_hash)
    ELSE encode(sha256(convert_to(
        audit_netstring('lethe.audit.v2') ||
        audit_netstring(seq::text) ||
        audit_netstring(id::text) ||
        audit_netstring(coalesce(request_id::text, '')) ||
        audit_netstring(hold_id) ||
        audit_netstring(system) ||
        audit_netstring(kind) ||
        audit_netstring(attempt::text) ||
        audit_netstring(detail) ||
        audit_netstring((extract(epoch FROM at) * 1000000)::bigint::text) ||
        audit_netstring(prev_hash) ||
        audit_netstring(actor),
    'UTF8')), 'hex')
    END
$$;

-- The insert trigger of 0003, now hashing the actor too.
CREATE OR REPLACE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_chain_head h WHERE h.one FOR UPDATE;
    NEW.seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.hash := audit_event_hash(NEW.seq, NEW.id, NEW.request_id, NEW.hold_id, NEW.system,
        NEW.kind, NEW.attempt, NEW.detail, NEW.at, NEW.prev_hash, NEW.actor);
    UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE one;
    RETURN NEW;
END;
$$;
