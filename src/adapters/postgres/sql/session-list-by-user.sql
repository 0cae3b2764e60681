-- session-list-by-user: a page of one user's sessions, newest first, after a keyset cursor (index sessions_tenant_user).
-- $1 tenant text
-- $2 userId text
-- $3 status text: only sessions whose effective status this is; null: any
-- $4 updatedAfter timestamptz: only sessions updated after this (at millisecond precision); null: any
-- $5 cursorT bigint: created_at of the last row of the previous page, microseconds since the epoch; null: first page
-- $6 cursorId text: id of that row; null: first page (then cursorT is null too)
-- $7 limit integer: rows to return
-- $8 search text: only sessions whose id starts with it or whose title contains it, case-insensitively; null: any
-- reply: the rows, each with cursor_t (its created_at in microseconds since the epoch, as text)
SELECT s.*, (extract(epoch FROM s.created_at) * 1000000)::bigint::text AS cursor_t
FROM sessions s
WHERE s.tenant_id = $1 AND s.user_id = $2
  -- The bounds are never null, so the comparison stays an index condition on every page.
  AND (s.created_at, s.id) < (COALESCE(timestamptz 'epoch' + $5::bigint * interval '1 microsecond', 'infinity'),
                              COALESCE($6::text, ''))
  -- Optional filters as CASE, not `$x IS NULL OR ...`: a generic plan estimates such an OR as
  -- nearly no rows and may then sort every row of the index range instead of reading it in order.
  AND CASE WHEN $3::text IS NULL THEN true ELSE agent_sessions_effective_status(s) = $3 END
  -- Timestamps leave the API at millisecond precision; compare at that precision too.
  AND CASE WHEN $4::timestamptz IS NULL THEN true ELSE date_trunc('milliseconds', s.updated_at) > $4 END
  -- Plain string functions, not LIKE: nothing the user types is a wildcard. A filter over the
  -- tenant's range read in creation order, which a console's search can afford.
  AND CASE WHEN $8::text IS NULL THEN true
      ELSE starts_with(lower(s.id), lower($8)) OR strpos(lower(s.title), lower($8)) > 0 END
ORDER BY s.created_at DESC, s.id DESC
LIMIT $7
