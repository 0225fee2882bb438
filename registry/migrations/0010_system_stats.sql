-- System stats (GET /v1/systems/{name}/stats) read one system's rows of
-- erasure_systems, whose primary key starts with the request: this index
-- finds them by system, newest change last.
CREATE INDEX erasure_systems_system ON erasure_systems (system, updated_at);
