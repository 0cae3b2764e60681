-- The Redis server (identity: its run_id, or every Cluster master's) whose contents under a
-- key prefix were last found trustworthy. A restarted or failed-over Redis may hold OLDER data
-- (an RDB/AOF reload, a lagging replica); an instance that connects to a server not recorded
-- here deletes the prefix's keys before any call goes to Redis, then records the server, so
-- the first instance to see a new server clears it once and the others trust it after that.
CREATE TABLE cache_redis_servers (
  key_prefix  text        PRIMARY KEY,
  identity    text        NOT NULL,
  verified_at timestamptz NOT NULL DEFAULT now()
);
