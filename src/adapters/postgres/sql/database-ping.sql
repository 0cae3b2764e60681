-- database-ping: the cheapest round trip, for readiness and health checks.
-- reply: one row
SELECT 1
