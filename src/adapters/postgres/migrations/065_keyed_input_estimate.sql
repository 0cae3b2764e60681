-- The elements of a statement's JSON list, for a planner that looks rows up by them (issue 14).
-- Append-only: never edit a migration that has shipped; add a new numbered file.
--
-- The statements that take a list of keys as one JSON parameter (a group of output appends,
-- counter increments, a heartbeat's runs, a getMany) read it with jsonb_array_elements, which
-- the planner counts as 100 rows whatever the list holds. Against 100 lookups, reading a whole
-- table of up to some ten thousand rows looks cheaper than 100 primary-key probes, so those
-- statements scanned all of `sessions` (or `runs`, `outbox`) at every call: with 6,000
-- sessions the output archive's group statement cost PostgreSQL twice its CPU per event. This
-- function returns the same elements and tells the planner to expect one row, so each key is
-- one primary-key probe. It is STRICT, which keeps the planner from inlining it (an inlined
-- call would be counted as jsonb_array_elements again). The statements that use it join the
-- list to each table once, in a chain, so no join of the list against itself depends on the
-- estimate.
CREATE FUNCTION agent_sessions_each(list jsonb) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 1 AS $$
  SELECT jsonb_array_elements(list)
$$;
