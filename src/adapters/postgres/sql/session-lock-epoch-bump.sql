-- session-lock-epoch-bump: moves a keyspace's lock epoch up by one, and to at least a floor.
-- $1 keyPrefix text: the Redis keyspace of the leases
-- $2 atLeast bigint: the lowest epoch the caller may use (above every epoch it saw in use)
-- reply: one row (epoch, the new epoch)
INSERT INTO session_lock_epochs AS e (key_prefix, epoch) VALUES ($1, GREATEST(1, $2::bigint))
ON CONFLICT (key_prefix) DO UPDATE SET epoch = GREATEST(e.epoch + 1, $2::bigint)
RETURNING epoch
