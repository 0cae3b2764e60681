-- Events (issue 5): writers no longer NOTIFY inside their transaction.
-- Append-only: never edit a migration that has shipped; add a new numbered file.
--
-- 030 added a trigger that sent NOTIFY from every transaction that inserted events.
-- PostgreSQL serializes the commits of all transactions that notified (a database-wide lock
-- held through each commit's WAL flush): bench/outbox-notify.ts measured ~375 session
-- creates/s with it against ~1,200/s without, at 16 concurrent writers. Wake-ups are now sent
-- after the commit, coalesced, in a statement of their own (src/adapters/postgres/outbox-signal.ts).
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS agent_sessions_outbox_notify();
