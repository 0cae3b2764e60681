-- outbox-mark: marks events as published (acknowledged by the broker); a row already marked keeps its time.
-- $1 ids jsonb: array of event ids
-- reply: none
UPDATE outbox SET published_at = now()
WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint) AND published_at IS NULL
