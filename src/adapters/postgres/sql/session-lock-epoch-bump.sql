-- session-lock-epoch-bump: moves a keyspace's lock epoch up, to the next even number at least a floor.
-- $1 keyPrefix text: the Redis keyspace of the leases
-- $2 atLeast bigint: the lowest epoch the caller may use (above every epoch it saw in use)
-- reply: one row (epoch, the new epoch)
-- Redis epochs are even; a PostgreSQL lease standing in for Redis hands out tokens in the odd epoch
-- above the current one (session-lock-acquire), so the two never hand out the same token.
INSERT INTO session_lock_epochs AS e (key_prefix, epoch) VALUES ($1, (GREATEST(1, $2::bigint) + 1) / 2 * 2)
ON CONFLICT (key_prefix) DO UPDATE SET epoch = (GREATEST(e.epoch + 1, $2::bigint) + 1) / 2 * 2
RETURNING epoch
