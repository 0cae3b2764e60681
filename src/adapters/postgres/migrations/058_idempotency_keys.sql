-- Idempotency keys (issue 12, SPEC §7.1): the first 2xx answer to a POST sent with an
-- `Idempotency-Key`, per tenant and key, replayed to every retry for 24 hours. The row is
-- written in the transaction of the operation it answers, so "committed" and "stored" are one
-- event: a crash between the commit and the reply still leaves the answer to replay.
-- `fingerprint` names the request (method, route, parameters, body); `body` is the answer's
-- JSON text as the route built it (text, not jsonb, so its key order is kept).
CREATE TABLE idempotency_keys (
  tenant_id text NOT NULL,
  key text NOT NULL,
  fingerprint text NOT NULL,
  status integer NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  body text,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key)
);

-- The sweep prunes by expiry.
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
