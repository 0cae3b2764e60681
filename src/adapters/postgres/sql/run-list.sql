-- run-list: a page of a session's runs, newest first (run ids are UUIDv7: id order is creation order).
-- $1 session text
-- $2 tenant text
-- $3 before uuid: the cursor (runs older than this one), null for the first page
-- $4 limit integer
-- reply: no row when the session does not exist for the tenant; else one row per run (id null when it has none)
SELECT r.* FROM sessions s
LEFT JOIN LATERAL (
  SELECT * FROM runs x WHERE x.tenant_id = s.tenant_id AND x.session_id = s.id AND ($3::uuid IS NULL OR x.id < $3::uuid)
  ORDER BY x.id DESC LIMIT $4
) r ON true
WHERE s.tenant_id = $2 AND s.id = $1
ORDER BY r.id DESC
