-- agent-sessions schema, version 1: the whole data model of SPEC §5.
-- Append-only: never edit a migration that has shipped; add a new numbered file.

CREATE TABLE sessions (
  id                   uuid PRIMARY KEY,
  tenant_id            text        NOT NULL,
  user_id              text,
  org_id               text,
  status               text        NOT NULL CHECK (status IN
                         ('initializing', 'active', 'idle', 'waiting_input', 'terminated', 'failed', 'expired')),
  model                text,
  title                text,
  system_prompt        text,
  workspace_path       text,
  mcp_client_ids       text[]      NOT NULL DEFAULT '{}',
  parent_session_id    uuid,
  metadata             jsonb       NOT NULL DEFAULT '{}',
  total_turns          bigint      NOT NULL DEFAULT 0 CHECK (total_turns >= 0),
  message_count        bigint      NOT NULL DEFAULT 0 CHECK (message_count >= 0),
  total_cost_usd       numeric(20, 10) NOT NULL DEFAULT 0 CHECK (total_cost_usd >= 0),
  input_tokens         bigint      NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
  output_tokens        bigint      NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
  version              bigint      NOT NULL DEFAULT 1,
  -- highest fencing token handed out by withSessionLock; writes with an older one are rejected
  fence                bigint      NOT NULL DEFAULT 0,
  -- last allocated seq of session_items and run_output (allocated by UPDATE, so never reused)
  item_seq             bigint      NOT NULL DEFAULT 0,
  output_seq           bigint      NOT NULL DEFAULT 0,
  ttl_seconds          integer,
  idle_timeout_seconds integer,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  last_active_at       timestamptz NOT NULL DEFAULT now(),
  expires_at           timestamptz,
  -- the absolute lifetime: sliding expiry never moves past it
  lifetime_ends_at     timestamptz,
  timeout_warned_at    timestamptz,
  ended_at             timestamptz,
  end_reason           text
);

CREATE INDEX sessions_tenant_created ON sessions (tenant_id, created_at DESC, id DESC);
CREATE INDEX sessions_tenant_user ON sessions (tenant_id, user_id, created_at DESC, id DESC);
CREATE INDEX sessions_live_expiry ON sessions (expires_at)
  WHERE status IN ('initializing', 'active', 'idle', 'waiting_input');
CREATE INDEX sessions_live_activity ON sessions (last_active_at)
  WHERE status IN ('initializing', 'active', 'idle', 'waiting_input');
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE status IN ('terminated', 'failed', 'expired');

CREATE TABLE session_items (
  session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  seq        bigint      NOT NULL,
  id         uuid        NOT NULL,
  role       text        NOT NULL,
  type       text        NOT NULL,
  content    jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, seq)
);

CREATE TABLE runs (
  id                     uuid PRIMARY KEY,
  session_id             uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  tenant_id              text        NOT NULL,
  status                 text        NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'interrupted')),
  owner                  text,
  lease_expires_at       timestamptz,
  interrupt_requested_at timestamptz,
  input                  jsonb,
  error                  text,
  created_at             timestamptz NOT NULL DEFAULT now(),
  started_at             timestamptz,
  ended_at               timestamptz
);

-- at most one running run per session
CREATE UNIQUE INDEX runs_one_running ON runs (session_id) WHERE status = 'running';
CREATE INDEX runs_session ON runs (session_id, created_at DESC);
CREATE INDEX runs_lease ON runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE run_output (
  session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  seq        bigint      NOT NULL,
  run_id     uuid        NOT NULL,
  type       text        NOT NULL,
  data       jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, seq)
);

CREATE TABLE outbox (
  id           bigserial PRIMARY KEY,
  tenant_id    text        NOT NULL,
  type         text        NOT NULL,
  session_id   uuid,
  payload      jsonb       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE api_keys (
  id         uuid PRIMARY KEY,
  tenant_id  text        NOT NULL,
  name       text,
  prefix     text        NOT NULL UNIQUE,
  hash       text        NOT NULL,
  scopes     text[]      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
