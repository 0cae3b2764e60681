-- outbox-horizon-latest: the highest event id handed out so far, committed or not (the sequence
-- draws one per inserted row and caches none, migration 030).
-- reply: one row, latest (text; null before the first event)
SELECT pg_sequence_last_value('outbox_id_seq'::regclass)::text AS latest
