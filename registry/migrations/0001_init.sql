-- The registry of systems and the ledger of erasure requests.
--
-- Identifier values never reach this database: subjects are kept as keyed
-- digests (package digest), and every other column holds types, names,
-- statuses and times.

-- systems is the registry: who holds personal data keyed by which identifier
-- types. A retired system keeps its row so that history can still name it.
CREATE TABLE systems (
    name              text        PRIMARY KEY,
    identifiers       text[]      NOT NULL CHECK (cardinality(identifiers) > 0),
    produces          text[]      NOT NULL DEFAULT '{}',
    topic             text        NOT NULL CHECK (topic <> ''),
    owner             text        NOT NULL DEFAULT '',
    description       text        NOT NULL DEFAULT '',
    confirm_within_ms bigint      NOT NULL CHECK (confirm_within_ms > 0),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    retired_at        timestamptz
);

-- Planning asks "which active systems erase by any of these types" with
-- identifiers && $1; a GIN index over the active rows answers it without
-- scanning the registry or the retired systems.
CREATE INDEX systems_active_identifiers ON systems USING gin (identifiers)
    WHERE retired_at IS NULL;

-- erasure_requests is the durable record of each request. Temporal forgets a
-- closed workflow after its namespace's retention; this table does not.
CREATE TABLE erasure_requests (
    id              uuid        PRIMARY KEY,
    status          text        NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    overdue         boolean     NOT NULL DEFAULT false,
    subject_types   text[]      NOT NULL,
    reason          text        NOT NULL DEFAULT '',
    requested_by    text        NOT NULL DEFAULT '',
    dry_run         boolean     NOT NULL DEFAULT false,
    -- NULL when the client sent no Idempotency-Key: NULLs never collide.
    idempotency_key text        UNIQUE,
    -- A digest of the request body, so a reused key with another body is
    -- recognised as a conflict rather than a replay.
    request_hash    text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    workflow_id     text        NOT NULL DEFAULT '',
    -- A request has a completion time exactly when it has reached a final status.
    CHECK ((status IN ('completed', 'failed', 'canceled')) = (completed_at IS NOT NULL))
);

-- Listing is newest first with keyset pagination on (created_at, id), with
-- or without a status filter.
CREATE INDEX erasure_requests_newest ON erasure_requests (created_at DESC, id DESC);
CREATE INDEX erasure_requests_status_newest ON erasure_requests (status, created_at DESC, id DESC);

-- request_subjects holds the keyed digests of a request's identifiers, so a
-- later request, a legal hold or a restored backup can recognise the same
-- subject without Lethe keeping the subject's data.
CREATE TABLE request_subjects (
    request_id uuid NOT NULL REFERENCES erasure_requests (id) ON DELETE CASCADE,
    id_type    text NOT NULL,
    digest     text NOT NULL,
    PRIMARY KEY (request_id, id_type, digest)
);

CREATE INDEX request_subjects_digest ON request_subjects (id_type, digest);

-- erasure_systems is each targeted system's progress within a request.
CREATE TABLE erasure_systems (
    request_id   uuid        NOT NULL REFERENCES erasure_requests (id) ON DELETE CASCADE,
    system       text        NOT NULL,
    status       text        NOT NULL
        CHECK (status IN ('pending', 'dispatched', 'erased', 'not_found', 'retained', 'failed')),
    attempts     integer     NOT NULL DEFAULT 0,
    records      bigint      NOT NULL DEFAULT 0,
    confirmed_at timestamptz,
    detail       text        NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (request_id, system)
);

-- audit_events is the history of every request. It has no foreign key on
-- purpose: the relay records confirmations that name unknown or forged
-- request ids, and those deserve a trace as much as the genuine ones.
CREATE TABLE audit_events (
    id         bigserial   PRIMARY KEY,
    request_id uuid        NOT NULL,
    system     text        NOT NULL DEFAULT '',
    kind       text        NOT NULL,
    attempt    integer     NOT NULL DEFAULT 0,
    detail     text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL
);

CREATE INDEX audit_events_request ON audit_events (request_id, id);

-- An audit that can be edited proves nothing, so the table refuses every
-- change but INSERT, whoever asks.
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP;
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
