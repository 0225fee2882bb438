-- system_credentials lists the credentials that sign a system's commands
-- and confirmations. Only their key ids live here: each secret is derived
-- from LETHE_SYSTEM_KEY and the key id (package credential), so a copy of
-- this table signs nothing. A credential is valid from created_at until
-- expires_at (never when NULL); issuing a new one for a system gives the
-- older ones an expiry at the end of the overlap.
CREATE TABLE system_credentials (
    key_id     text        PRIMARY KEY,
    system     text        NOT NULL REFERENCES systems (name),
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);

-- Signing and checking ask for one system's credentials, newest first.
CREATE INDEX system_credentials_system ON system_credentials (system, created_at DESC);
