-- Bulk erasure (POST /v1/erasure-batches): one batch of up to 100,000
-- subjects, run as one parent workflow over chunks of at most 1,000.
--
-- A subject of a batch is not an erasure_requests row: its state lives in
-- batch_subjects and batch_outcomes, written many rows per statement, and
-- the audit records the batch's steps per chunk and system (how many
-- subjects, with which outcomes) rather than per subject, so that 100,000
-- subjects do not take a million turns of the audit chain's lock. Like the
-- rest of the ledger, these tables hold keyed digests, never values.

-- systems.batch: the system takes erasure.batch_command.v1 (many subjects
-- per message) on its topic; the others get one erasure.command.v1 per
-- subject of a batch.
ALTER TABLE systems ADD COLUMN batch boolean NOT NULL DEFAULT false;

CREATE TABLE erasure_batches (
    id              uuid        PRIMARY KEY,
    status          text        NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    overdue         boolean     NOT NULL DEFAULT false,
    -- total is the number of distinct subjects; duplicates the lines of the
    -- body that named a subject already named, merged into it.
    total           integer     NOT NULL CHECK (total > 0),
    duplicates      integer     NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
    chunks          integer     NOT NULL CHECK (chunks > 0),
    subject_types   text[]      NOT NULL,
    reason          text        NOT NULL DEFAULT '',
    requested_by    text        NOT NULL DEFAULT '',
    created_by      text        NOT NULL DEFAULT '',
    dry_run         boolean     NOT NULL DEFAULT false,
    idempotency_key text        UNIQUE,
    request_hash    text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    workflow_id     text        NOT NULL DEFAULT '',
    -- finished_xid orders finished batches in the suppression list, as
    -- erasure_requests.finished_xid does requests (0005).
    finished_xid    xid8,
    CHECK ((status IN ('completed', 'failed', 'canceled')) = (completed_at IS NOT NULL)),
    CHECK ((finished_xid IS NULL) = (completed_at IS NULL))
);

CREATE INDEX erasure_batches_newest ON erasure_batches (created_at DESC, id DESC);

CREATE TRIGGER erasure_batches_stamp_finished
    BEFORE INSERT OR UPDATE ON erasure_batches
    FOR EACH ROW
    WHEN (NEW.completed_at IS NOT NULL AND NEW.finished_xid IS NULL)
    EXECUTE FUNCTION erasure_requests_stamp_finished();

-- batch_chunks names each chunk. Its id is the chunk's workflow id
-- (workflows.ErasureWorkflowID) and, on the wire, the request_id of the
-- single commands and the batch_id of the batch commands of its subjects,
-- so that the relay routes their confirmations as it routes a request's.
CREATE TABLE batch_chunks (
    batch_id uuid    NOT NULL REFERENCES erasure_batches (id) ON DELETE CASCADE,
    chunk    integer NOT NULL CHECK (chunk >= 0),
    id       uuid    NOT NULL UNIQUE,
    PRIMARY KEY (batch_id, chunk)
);

-- batch_subjects is each distinct subject of a batch and its status:
-- pending until its chunk planned it, running, then completed (every
-- system reached erased, not_found or retained), failed or canceled.
CREATE TABLE batch_subjects (
    batch_id   uuid        NOT NULL REFERENCES erasure_batches (id) ON DELETE CASCADE,
    item       integer     NOT NULL CHECK (item >= 0),
    item_id    uuid        NOT NULL,
    chunk      integer     NOT NULL CHECK (chunk >= 0),
    status     text        NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (batch_id, item)
);

CREATE INDEX batch_subjects_status ON batch_subjects (batch_id, status, item);

-- batch_subject_digests are the keyed digests of each subject's
-- identifiers: those of the request, then those systems revealed
-- (derived). The proof of one subject is found by any of them.
CREATE TABLE batch_subject_digests (
    batch_id uuid    NOT NULL,
    item     integer NOT NULL,
    id_type  text    NOT NULL,
    digest   text    NOT NULL,
    derived  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (batch_id, item, id_type, digest),
    FOREIGN KEY (batch_id, item) REFERENCES batch_subjects (batch_id, item) ON DELETE CASCADE
);

CREATE INDEX batch_subject_digests_digest ON batch_subject_digests (batch_id, digest);
CREATE INDEX batch_subject_digests_type_digest ON batch_subject_digests (id_type, digest);

-- batch_outcomes is each targeted system's progress for each subject,
-- as erasure_systems is for a request.
CREATE TABLE batch_outcomes (
    batch_id     uuid        NOT NULL,
    item         integer     NOT NULL,
    system       text        NOT NULL,
    status       text        NOT NULL
        CHECK (status IN ('pending', 'dispatched', 'erased', 'not_found', 'retained', 'failed')),
    attempts     integer     NOT NULL DEFAULT 0,
    records      bigint      NOT NULL DEFAULT 0,
    confirmed_at timestamptz,
    detail       text        NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (batch_id, item, system),
    FOREIGN KEY (batch_id, item) REFERENCES batch_subjects (batch_id, item) ON DELETE CASCADE
);

-- batch_ledger_writes names the deltas a batch's workflows wrote, so that
-- a delta written again (an activity retried after its commit) changes
-- nothing.
CREATE TABLE batch_ledger_writes (
    batch_id uuid NOT NULL REFERENCES erasure_batches (id) ON DELETE CASCADE,
    name     text NOT NULL,
    PRIMARY KEY (batch_id, name)
);
