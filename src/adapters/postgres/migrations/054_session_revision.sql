-- A session's revision (issue 11, SPEC §6.2): bumped only by writes to the fields a client
-- sets (update, terminate), while `version` keeps going up on every write and orders cache
-- entries. The ETag and conditional writes (If-Match, expectedRevision) compare the revision,
-- so appending an item, counting or touching never makes a metadata update fail.
--
-- Existing sessions start at their version, not at 1: the ETags clients already hold are
-- versions, so an unchanged session still matches the one they read and a changed one does
-- not. Starting at 1 would make an old ETag "1" match again after later writes (a lost update).
-- It also keeps revision <= version on every row, which an instance still on the previous
-- release relies on: it compares If-Match with the version, and that can only refuse more.
ALTER TABLE sessions ADD COLUMN revision bigint NOT NULL DEFAULT 1;
UPDATE sessions SET revision = version;

-- The preconditions of a write a caller may set, on the locked row: the revision it read
-- (If-Match / expectedRevision; null: any) and its fencing token (null: none; an older token
-- than the newest handed out is stale). 051's agent_sessions_preconditions_hold (the version)
-- stays for instances of the previous release during a rolling deploy.
CREATE FUNCTION agent_sessions_revision_preconditions_hold(s sessions, p_expected_revision bigint, p_fencing_token bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (p_expected_revision IS NULL OR s.revision = p_expected_revision)
    AND (p_fencing_token IS NULL OR p_fencing_token >= s.fence)
$$;
