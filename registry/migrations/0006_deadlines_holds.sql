-- Deadlines: the internal target before each request's legal deadline, and
-- the one extension GDPR Art. 12(3) allows.
ALTER TABLE erasure_requests
    ADD COLUMN target           timestamptz,
    ADD COLUMN extended_at      timestamptz,
    ADD COLUMN extension_reason text NOT NULL DEFAULT '';

UPDATE erasure_requests SET target = deadline - interval '48 hours' WHERE target IS NULL;
ALTER TABLE erasure_requests ALTER COLUMN target SET NOT NULL;

-- Overdue requests are listed with GET /v1/erasures?overdue=true.
CREATE INDEX erasure_requests_overdue_newest ON erasure_requests (created_at DESC, id DESC)
    WHERE overdue;

-- legal_holds are exemptions (Art. 17(3)) that stop erasure of a subject in
-- one system (system set) or in all (system NULL) until lifted or expired.
CREATE TABLE legal_holds (
    id         text        PRIMARY KEY,
    system     text,
    basis      text        NOT NULL CHECK (basis <> ''),
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    lifted_at  timestamptz
);

-- A hold's subject, as keyed digests: it matches a request that shares any.
CREATE TABLE legal_hold_subjects (
    hold_id text NOT NULL REFERENCES legal_holds (id) ON DELETE CASCADE,
    id_type text NOT NULL,
    digest  text NOT NULL,
    PRIMARY KEY (hold_id, id_type, digest)
);

CREATE INDEX legal_hold_subjects_digest ON legal_hold_subjects (id_type, digest);

-- request_holds remembers which requests a hold kept systems of, so that
-- lifting it can wake exactly those requests.
CREATE TABLE request_holds (
    hold_id    text NOT NULL,
    request_id uuid NOT NULL REFERENCES erasure_requests (id) ON DELETE CASCADE,
    PRIMARY KEY (hold_id, request_id)
);
