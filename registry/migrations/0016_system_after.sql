-- systems.after_systems: the systems this one is erased after
-- (lethe.System.After). A request dispatches to it only once each of them
-- that the request targets has reached a final outcome. PutSystem keeps the
-- graph free of cycles under an advisory lock; a name may outlive its
-- system's retirement, and a request then treats it as not targeted.
ALTER TABLE systems ADD COLUMN after_systems text[] NOT NULL DEFAULT '{}';
