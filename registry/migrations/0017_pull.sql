-- Pull mode: a system registered with mode 'pull' gets no Kafka commands;
-- its connector leases them over HTTP (GET /v1/systems/{name}/commands).
ALTER TABLE systems ADD COLUMN mode text NOT NULL DEFAULT 'kafka'
    CHECK (mode IN ('kafka', 'pull'));

-- pull_commands is the queue of a pull-mode system's open commands: one
-- row per command, written by the worker where a Kafka system's command
-- would be produced. It holds no identifier value: the command's body is
-- read from its workflow when it is leased. attempt is the attempt the
-- connector is (or will next be) offered; it rises when a lease expires
-- unconfirmed and when the workflow dispatches again (wf_attempt, the
-- workflow's own count). A row is due when never leased since its last
-- dispatch (leased_until NULL) or when its lease has run out.
CREATE TABLE pull_commands (
    command_id   text        PRIMARY KEY,
    request_id   text        NOT NULL,
    system       text        NOT NULL,
    wf_attempt   integer     NOT NULL,
    attempt      integer     NOT NULL,
    issued_at    timestamptz NOT NULL,
    confirm_by   timestamptz NOT NULL,
    leased_until timestamptz,
    created_at   timestamptz NOT NULL
);

-- Leasing asks for one system's due rows, oldest first.
CREATE INDEX pull_commands_system ON pull_commands (system, issued_at);
-- A request that ends takes its rows with it.
CREATE INDEX pull_commands_request ON pull_commands (request_id);
