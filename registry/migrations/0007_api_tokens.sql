-- api_tokens are the Lethe tokens that services and scripts present as
-- bearer credentials (lethe token create). Only the SHA-256 of a token is
-- kept: a token is 256 random bits, so its plain hash cannot be reversed or
-- guessed, and a copy of this table authenticates nobody.
CREATE TABLE api_tokens (
    token_hash   text        PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    name         text        NOT NULL CHECK (name <> ''),
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- A name names one token that is not revoked; once revoked, the name may be
-- given to a new token, and the revoked one stays listed.
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
