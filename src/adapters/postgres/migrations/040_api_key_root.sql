-- Root admin keys manage every tenant's keys; other admin keys manage only their own tenant's.
-- Only the CLI (`keys create --root`) and the embedded first-start key make root keys.
ALTER TABLE api_keys ADD COLUMN root boolean NOT NULL DEFAULT false;
