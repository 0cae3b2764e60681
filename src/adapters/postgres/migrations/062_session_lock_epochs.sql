-- Fencing tokens without a PostgreSQL write per lease (issue 14). With Redis, a token is
-- epoch * 2^32 + counter: the counter comes from Redis (one per session, reset when the epoch
-- changes), the epoch from this table, one row per key prefix (the Redis keyspace the leases
-- live in). The epoch goes up only when Redis lost or may have lost counters (its epoch key is
-- missing or disagrees with this row, a counter ran out, or a token from PostgreSQL is already
-- above the counter's), so that every later token is above every token handed out before.
--
-- Epochs in this table are even; a PostgreSQL lease standing in while Redis is unreachable
-- hands out tokens in the odd epoch above the current one, so a Redis token and a PostgreSQL
-- token are never the same number, even while the two leases overlap.
--
-- sessions.fence keeps "the newest token this row has seen": handed out by a PostgreSQL lease,
-- or carried by an accepted write (the write statements raise it to the token they carry).
CREATE TABLE session_lock_epochs (
  key_prefix text   PRIMARY KEY,
  epoch      bigint NOT NULL CHECK (epoch > 0)
);
