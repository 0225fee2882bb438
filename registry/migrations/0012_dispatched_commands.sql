-- lethe_system_commands_silent counts, at every scrape, the commands still
-- waiting for their system's answer. They are a small part of
-- erasure_systems, which keeps every command of every retained request:
-- this partial index lists them by system without reading the rest.
CREATE INDEX erasure_systems_dispatched ON erasure_systems (system) WHERE status = 'dispatched';
