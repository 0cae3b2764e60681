-- session-versions: the committed version of each session named (near caches check their entries with it).
-- $1 tenants text[]: the tenant of each session
-- $2 ids text[]: the id of each session, in the same order
-- reply: tenant_id, id, version of the sessions found (missing ones left out, in no order)
SELECT s.tenant_id, s.id, s.version
FROM unnest($1::text[], $2::text[]) AS k(tenant_id, id)
JOIN sessions s ON s.tenant_id = k.tenant_id AND s.id = k.id
