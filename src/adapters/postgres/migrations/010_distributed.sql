-- Distributed mode (issue 3): the Redis cache repair log and PostgreSQL session leases.

-- A session write whose Redis cache update failed (Redis unreachable) is recorded here
-- before it is acknowledged. An instance that reaches Redis writes a marker that keeps
-- versions older than `version` out of the cache, then deletes the row. Instances recovering
-- from an outage drain this table before they read from Redis again.
CREATE TABLE cache_repairs (
  id         bigserial PRIMARY KEY,
  session_id uuid        NOT NULL,
  version    bigint      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- withSessionLock leases where Redis is not configured (embedded, PostgreSQL-only) or not
-- reachable. The fencing token is sessions.fence either way.
CREATE TABLE session_locks (
  session_id uuid        PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
  token      text        NOT NULL,
  expires_at timestamptz NOT NULL
);
